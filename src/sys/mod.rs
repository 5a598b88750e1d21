//! The ONLY code that touches the machine: files, locks, processes, D-Bus, the network,
//! the environment. Everything above talks to it through plain functions or small traits
//! (so `ops` can be tested with recording fakes).

pub mod archive;
pub mod audit;
pub mod build;
pub mod bundle;
pub mod copytree;
pub mod env;
pub mod fdwalk;
pub mod fs;
pub mod http;
pub mod inspect;
pub mod instdir;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod net;
pub mod nginx;
pub mod npm;
pub mod privilege;
pub mod seal;
pub mod secret;
pub mod statefile;
pub mod systemd;
pub mod tls;
pub mod unpack;
pub mod users;
pub mod writeback;
