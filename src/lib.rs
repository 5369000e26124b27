//! docker-netattach: give a Docker container started with `--network=none` a real interface on
//! a Docker bridge. See README.md for the user's view; each module's header names its side
//! effects.

pub(crate) mod address;
pub mod arena;
pub(crate) mod attach;
pub(crate) mod attachment;
pub mod cli;
pub(crate) mod completion;
pub(crate) mod detach;
pub mod docker;
pub(crate) mod doctor;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod forked;
pub(crate) mod fsutil;
pub(crate) mod gc;
pub(crate) mod generate;
pub(crate) mod hostns;
pub(crate) mod inspect;
pub mod ipam;
pub mod lease;
pub mod link;
pub mod list;
pub(crate) mod manpage;
pub(crate) mod model;
pub mod names;
pub mod netns;
pub mod output;
pub(crate) mod owner;
pub mod plan;
pub(crate) mod plugin;
pub(crate) mod privilege;
pub(crate) mod procroot;
pub mod run;
pub(crate) mod select;
pub(crate) mod short_form;
pub(crate) mod target;
pub(crate) mod template;
pub(crate) mod txn;
pub(crate) mod watch;
pub(crate) mod watch_lock;
pub mod worker;

/// Whether a one-shot attach may leave its lease's syncs to a child that outlives it
/// (`forked::can_outlive`); the tests ask it to know which behaviour this host gets.
pub use forked::can_outlive;
