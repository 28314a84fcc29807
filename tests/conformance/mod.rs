//! The conformance suite: written once against the `EventStore` trait, run against every store.
//!
//! A store's test file says `mod conformance;` and `conformance::conformance_tests!(fixture);`
//! where `async fn fixture() -> (S, G)` makes a fresh, empty store and a guard that cleans it
//! up when dropped. Each test is an `async fn(store)` in the module of its concern; the macro
//! makes one `#[tokio::test]` of each, under the test's own name.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

/// The seed's `WidgetRegistryEndpoint`, the same file the examples use.
#[path = "../../examples/common/widget.rs"]
pub(crate) mod widget;

/// The audit log process application of `examples/widget_projections.rs`.
#[path = "../../examples/common/audit.rs"]
pub(crate) mod audit;

/// Waiting with a deadline, as the other root suites do.
#[path = "../common/wait.rs"]
pub(crate) mod wait;

pub(crate) mod fixtures;
pub(crate) mod seed;

pub(crate) mod append;
pub(crate) mod application;
pub(crate) mod load;
pub(crate) mod log;
pub(crate) mod process;
pub(crate) mod schema;
pub(crate) mod snapshots;
pub(crate) mod tracking;

/// Runs every conformance test against a store made by `$fixture`.
macro_rules! conformance_tests {
    ($fixture:path) => {
        $crate::conformance::conformance_tests!(@tests $fixture;
            load::save_and_load,
            load::update_persists_after_reload,
            load::fifteen_updates_then_reload,
            append::two_copies_conflict,
            append::multi_aggregate_save_is_all_or_nothing,
            load::get_at_returns_past_versions,
            load::exists_and_not_found,
            load::decode_failure_names_stream_version_and_type,
            application::update_helper_runs_commands,
            application::concurrent_updates_with_retry,
            log::read_log_pages_in_order,
            append::metadata_round_trips,
            append::non_contiguous_first_version_is_a_conflict,
            append::the_same_metadata_is_accepted_or_refused_alike,
            load::load_for_replay_matches_load,
            load::replay_into_feeds_what_load_for_replay_returns,
            load::a_stream_never_loads_as_another_type,
            snapshots::seed_snapshot_test,
            snapshots::snapshots_at_interval_and_get_at_uses_older_ones,
            snapshots::max_snapshots_prunes_old_ones,
            snapshots::take_snapshot_and_disabled,
            schema::snapshot_of_another_shape_is_ignored_and_replaced,
            schema::old_event_payload_loads_through_its_upcast,
            schema::payload_newer_than_the_code_is_a_clear_error,
            snapshots::snapshots_equal_full_replay,
            snapshots::snapshot_lookup_only_where_it_can_help,
            snapshots::load_from_snapshot_reads_what_two_calls_read,
            tracking::tracking_is_atomic_with_events,
            log::log_stream_reads_everything_in_pages,
            log::subscription_catches_up_then_follows_live,
            application::failing_hook_never_fails_the_save,
            process::process_application_is_exactly_once,
            process::failing_handler_stops_and_restart_resumes,
        );
    };
    (@tests $fixture:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fixture().await;
                $crate::conformance::$module::$name(store).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;
