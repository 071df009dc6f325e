//! `sitefs mount`, `sitefs umount` and `sitefs manifest ...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use sitefs::interpreter::Interpreter;
use sitefs::manifest::{DistRef, Manifest};
use sitefs::mount::daemon::{self, MountRequest};
use sitefs::mount::options::MountOpts;
use sitefs::mount::unmount::unmount;
use sitefs::store::Store;
use sitefs::view::build;

use super::{CliError, CliResult, StoreArg};

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Check a manifest against its store: every error a mount would hit.
    Check { manifest: PathBuf },
    /// Write a manifest naming distributions from the store.
    New {
        #[command(flatten)]
        store: StoreArg,
        /// The interpreter the environment is for.
        #[arg(long, value_name = "PY")]
        python: String,
        /// Write here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// NAME or NAME==VERSION; each must match exactly one distribution.
        #[arg(required = true)]
        specs: Vec<String>,
    },
}

pub fn run_manifest(cmd: ManifestCommand, quiet: bool) -> CliResult {
    match cmd {
        ManifestCommand::Check { manifest } => {
            let view = build::load(&manifest)?.view;
            if !quiet {
                println!(
                    "{}: ok ({} dists, {} files and directories)",
                    manifest.display(),
                    view.owners.len(),
                    view.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::New {
            store,
            python,
            output,
            specs,
        } => new_manifest(&store, &python, output.as_deref(), &specs),
    }
}

fn new_manifest(
    arg: &StoreArg,
    python: &str,
    output: Option<&Path>,
    specs: &[String],
) -> CliResult {
    let store = Store::open(&Store::locate(arg.store.as_deref())?)?;
    let interp = Interpreter::probe(python.as_ref())?;
    let mut dists = Vec::new();
    for spec in specs {
        let found = store.find(spec)?;
        if found.len() > 1 {
            let ids: Vec<_> = found.iter().map(|m| m.id.as_str()).collect();
            return Err(CliError(format!(
                "{spec} matches several distributions ({}): give NAME==VERSION",
                ids.join(", ")
            )));
        }
        dists.push(DistRef::of(&found[0], true));
    }
    let manifest = Manifest::new(store.root(), &interp, None, dists);
    match output {
        Some(p) => manifest.save(p)?,
        None => print!("{}", toml::to_string(&manifest)?),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn mount(
    manifest: PathBuf,
    mountpoint: PathBuf,
    options: &[String],
    foreground: bool,
) -> CliResult {
    let opts = MountOpts::parse(&options.join(","))?;
    daemon::mount(MountRequest {
        manifest,
        mountpoint,
        opts,
        foreground,
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn umount(mountpoint: &Path) -> CliResult {
    unmount(mountpoint)?;
    Ok(ExitCode::SUCCESS)
}
