//! Compile-time checks of the macros: every `tests/ui/fail` case must fail with the reviewed
//! message beside it, every `tests/ui/pass` case must build and run.
//! Regenerate the messages with `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
