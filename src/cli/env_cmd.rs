//! `sitefs env ...`: create, change, list, mount and remove environments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use sitefs::env::{self, CreateRequest};
use sitefs::mount::options::MountOpts;
use sitefs::resolve::Sources;
use sitefs::store::Store;

use super::{CliResult, StoreArg};

/// Where an environment's distributions come from.
#[derive(Args, Clone, Debug)]
pub struct SourceArgs {
    /// Wheel files or directories of wheels.
    #[arg(value_name = "WHEEL_OR_DIR")]
    pub wheels: Vec<PathBuf>,
    /// A requirements file of pinned `name==version` lines (repeatable).
    #[arg(short = 'r', long = "requirement", value_name = "FILE")]
    pub requirements: Vec<PathBuf>,
    /// A PEP 751 pylock.toml.
    #[arg(long, value_name = "PYLOCK")]
    pub lock: Option<PathBuf>,
    /// Also look for wheels in this directory (repeatable).
    #[arg(short = 'f', long = "find-links", value_name = "DIR")]
    pub find_links: Vec<PathBuf>,
}

impl SourceArgs {
    fn sources(&self) -> Result<Sources, super::CliError> {
        if self.wheels.is_empty() && self.requirements.is_empty() && self.lock.is_none() {
            return Err(super::CliError(
                "nothing to install: give wheels, -r FILE or --lock FILE".into(),
            ));
        }
        Ok(Sources {
            wheels: self.wheels.clone(),
            requirements: self.requirements.clone(),
            lock: self.lock.clone(),
            find_links: self.find_links.clone(),
        })
    }
}

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Create a venv whose site-packages is a sitefs mount.
    Create {
        #[command(flatten)]
        store: StoreArg,
        venv: PathBuf,
        /// The interpreter for the venv.
        #[arg(long, value_name = "PY")]
        python: String,
        #[command(flatten)]
        sources: SourceArgs,
        /// Mount options (see `sitefs mount --help`).
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
    },
    /// Add distributions to a live env (no unmount).
    Add {
        venv: PathBuf,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Remove distributions from a live env by name.
    Remove {
        venv: PathBuf,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List the envs registered in the store.
    Ls {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Unmount, delete and deregister an env.
    Rm { venv: PathBuf },
    /// Mount an env from its own manifest (e.g. after a reboot).
    Mount {
        venv: PathBuf,
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
    },
    /// Unmount an env's site-packages.
    Umount { venv: PathBuf },
    /// Rewrite the env's scripts, headers and data files from the store.
    Repair { venv: PathBuf },
    /// Turn a sitefs env back into a plain venv with real files.
    Materialize { venv: PathBuf },
}

pub fn run(cmd: EnvCommand, quiet: bool) -> CliResult {
    match cmd {
        EnvCommand::Create {
            store,
            venv,
            python,
            sources,
            options,
        } => {
            let created = env::create(CreateRequest {
                venv,
                python,
                store: Store::locate(store.store.as_deref())?,
                sources: sources.sources()?,
                mount: MountOpts::parse(&options.join(","))?,
                quiet,
            })?;
            if !quiet {
                println!(
                    "created {} ({} distributions, {} scripts)",
                    created.venv.display(),
                    created.dists,
                    created.scripts
                );
            }
        }
        EnvCommand::Add { venv, sources } => {
            let n = env::add(&venv, &sources.sources()?, quiet)?;
            if !quiet {
                println!("added {n} distribution(s) to {}", venv.display());
            }
        }
        EnvCommand::Remove { venv, names } => {
            let n = env::remove(&venv, &names)?;
            if !quiet {
                println!("removed {n} distribution(s) from {}", venv.display());
            }
        }
        EnvCommand::Ls { store } => {
            let store = Store::open(&Store::locate(store.store.as_deref())?)?;
            for e in env::list(&store) {
                let dists = e
                    .dists
                    .map_or("manifest missing".to_string(), |n| format!("{n} dists"));
                let state = if e.mounted { "mounted" } else { "not mounted" };
                println!("{}\t{state}\t{dists}", e.venv.display());
            }
        }
        EnvCommand::Rm { venv } => env::remove_env(&venv)?,
        EnvCommand::Mount { venv, options } => {
            env::mount(&venv, &MountOpts::parse(&options.join(","))?)?
        }
        EnvCommand::Umount { venv } => env::umount(&venv)?,
        EnvCommand::Materialize { venv } => {
            let n = sitefs::env::materialize::materialize(&venv)?;
            if !quiet {
                println!("{} is a plain venv again ({n} files)", venv.display());
            }
        }
        EnvCommand::Repair { venv } => {
            let n = env::repair(&venv)?;
            if !quiet {
                println!("rewrote {n} file(s) in {}", venv.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn adopt(
    venv: &std::path::Path,
    store: &StoreArg,
    dry_run: bool,
    options: &[String],
    quiet: bool,
) -> Result<(), super::CliError> {
    let opts = MountOpts::parse(&options.join(","))?;
    let store = Store::locate(store.store.as_deref())?;
    let r = sitefs::env::adopt::adopt(venv, &store, &opts, dry_run, quiet)?;
    for f in &r.dropped {
        eprintln!("note: not carried over: {f} (a virtualenv/uv build shim, not needed to import packages)");
    }
    if !quiet {
        let human = super::store_cmd::human;
        println!(
            "{} {}: {} distributions; frees {} of site-packages, adds {} to the store",
            if dry_run { "would adopt" } else { "adopted" },
            venv.display(),
            r.dists,
            human(r.site_packages_bytes),
            human(r.new_bytes)
        );
    }
    Ok(())
}
