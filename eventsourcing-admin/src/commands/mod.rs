//! One file per command; each has its clap `Args` and `run`. Adding a command: its file and a
//! `mod` line here, a line in `cli.rs`.

pub(crate) mod append_only;
pub(crate) mod archive;
pub(crate) mod export;
pub(crate) mod grants;
pub(crate) mod import;
pub(crate) mod indexes;
pub(crate) mod migrate;
pub(crate) mod snapshots;
pub(crate) mod status;
pub(crate) mod tenants;
pub(crate) mod vacuum;
pub(crate) mod verify;
