//! sitefs: Python environments as read-only FUSE views over a shared,
//! verified, content-addressed store of unpacked wheels.
//!
//! The crate is layered so each concept can be read and tested alone:
//! [`wheel`] parses and verifies wheel archives, [`store`] names where
//! things live, [`ingest`] adds wheels to it, [`dist_index`] is the
//! per-distribution index a mount loads, [`bytecode`] compiles sources with
//! the target interpreter, [`manifest`] names an environment's
//! distributions, [`view`] merges them into one tree (pure data), [`fs`]
//! serves that tree over FUSE and [`daemon`] runs the mount. On top,
//! [`env`](mod@env) makes venvs: [`resolve`] turns wheels, [`requirements`] files
//! and [`pylock`] locks into store dists, [`venv`] writes the skeleton,
//! [`scripts`] and [`record`] what pip would have written.

pub mod adopt;
pub mod bytecode;
pub mod daemon;
pub mod dist_index;
pub mod env;
pub mod fs;
pub mod gc;
pub mod hashing;
pub mod ingest;
pub mod interpreter;
pub mod lock;
pub mod manifest;
pub mod markers;
pub mod materialize;
pub mod progress;
pub mod pylock;
pub mod record;
pub mod requirements;
pub mod resolve;
pub mod roots;
pub mod scripts;
pub mod store;
pub mod uring;
pub mod venv;
pub mod verify;
pub mod view;
pub mod view_cache;
pub mod wheel;
