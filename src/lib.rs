//! sitefs: Python environments as read-only FUSE views over a shared,
//! verified, content-addressed store of unpacked wheels.
//!
//! The crate is layered so each concept can be read and tested alone, one
//! folder per layer, lower layers never naming higher ones:
//!
//! - [`hashing`], [`stamp`], [`interpreter`], [`progress`]: leaves every
//!   layer may use (digests, file stamps, the target Python's facts).
//! - [`wheel`]: wheel archives: file names, `WHEEL`, `METADATA`, `RECORD`,
//!   verified extraction. Knows nothing of the store.
//! - [`store`]: the shared content-addressed store: its layout, ingest,
//!   bytecode, per-dist indexes, verify, gc, roots and locks.
//! - [`install`]: what installing a wheel writes besides site-packages
//!   (scripts, headers, data, the installed RECORD), as pip writes it.
//! - [`resolve`]: what the user named (wheels, requirements, `pylock.toml`,
//!   markers) turned into store dists.
//! - [`manifest`]: the small TOML file that is the whole truth of an env.
//! - [`view`]: the merged tree of an env's dists, pure data, and its cached
//!   image.
//! - [`mount`]: the FUSE adapter, its two transports and the daemon.
//! - [`env`](mod@env): venvs: skeleton, create/add/remove, adopt, materialize.
//!
//! The `sitefs` binary (`src/cli/`) is a thin layer over these.

pub mod env;
pub mod hashing;
pub mod install;
pub mod interpreter;
pub mod manifest;
pub mod mount;
pub mod progress;
pub mod resolve;
pub mod stamp;
pub mod store;
pub mod view;
pub mod wheel;
