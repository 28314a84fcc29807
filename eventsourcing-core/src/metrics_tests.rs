//! Unit tests of the metrics names and helpers (`metrics.rs`).
use super::*;

#[test]
fn the_docs_table_lists_every_metric() {
    let source = include_str!("metrics.rs");
    for m in METRICS {
        assert!(
            source.contains(&format!("//! | `{}` |", m.name)),
            "{} is missing from the table",
            m.name
        );
    }
    let rows = source
        .lines()
        .filter(|l| l.starts_with("//! | `eventsourcing_"))
        .count();
    assert_eq!(
        rows,
        METRICS.len(),
        "a table row names no metric of METRICS"
    );
}

#[test]
fn a_save_of_one_type_is_labelled_with_it_and_of_several_as_mixed() {
    let id = Uuid::nil();
    let mut one = SaveSummary::default();
    one.add("Widget", id, 2);
    one.add("Widget", id, 3);
    assert_eq!(one.label(), "Widget");
    assert_eq!(one.first, Some(("Widget", 5)));
    let mut two = SaveSummary::default();
    two.add("Widget", id, 1);
    two.add("Order", id, 1);
    two.add("Order", id, 4);
    assert_eq!(two.label(), "mixed");
    assert_eq!(two.more, vec![("Order", 5)]);
}
