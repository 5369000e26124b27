//! docker-netattach: give a Docker container started with `--network=none` a real interface on
//! a Docker bridge. See README.md for the user's view; each module's header names its side
//! effects.

pub mod address;
pub mod attach;
pub mod attachment;
pub mod cli;
pub mod completion;
pub mod detach;
pub mod docker;
pub mod doctor;
pub mod endpoint;
pub mod error;
pub mod fsutil;
pub mod gc;
pub mod generate;
pub mod hostns;
pub mod inspect;
pub mod ipam;
pub mod lease;
pub mod link;
pub mod list;
pub mod manpage;
pub mod names;
pub mod netns;
pub mod output;
pub mod owner;
pub mod plan;
pub mod plugin;
pub mod privilege;
pub mod procroot;
pub mod run;
pub mod select;
pub mod short_form;
pub mod target;
pub mod template;
pub mod txn;
pub mod watch;
pub mod watch_lock;
pub mod worker;
