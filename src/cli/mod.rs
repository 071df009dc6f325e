//! Command-line definitions and dispatch. Each subcommand group has its
//! own file; this one parses, sets up logging and turns errors into one
//! line on stderr and a non-zero exit.

mod env_cmd;
mod mount_cmd;
mod store_cmd;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sitefs",
    version,
    about = "Python environments as read-only FUSE views over a shared wheel store"
)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// No progress bars or per-item output.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the shared store of unpacked, verified distributions.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Create and manage virtual environments whose site-packages is a sitefs mount.
    #[command(subcommand)]
    Env(env_cmd::EnvCommand),
    /// Check or write environment manifests.
    #[command(subcommand)]
    Manifest(mount_cmd::ManifestCommand),
    /// Mount a manifest's site-packages (returns once the mount is live).
    Mount {
        manifest: PathBuf,
        mountpoint: PathBuf,
        /// Stay in the foreground instead of daemonizing.
        #[arg(short, long)]
        foreground: bool,
        /// Mount options: allow_other, allow_root, open=auto|passthrough|cached, uring=auto|on|off, pyc=link|file, threads=N, ...
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
    },
    /// Unmount a sitefs mount.
    Umount { mountpoint: PathBuf },
    /// Turn a venv made by pip, uv or tox into a sitefs env (no downloads).
    Adopt {
        #[command(flatten)]
        store: StoreArg,
        venv: PathBuf,
        /// Only report what adopting would free and add to the store.
        #[arg(long = "dry-run", short = 'n')]
        dry_run: bool,
        /// Mount options (see `sitefs mount --help`).
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
    },
}

/// The store location option shared by every command that touches one.
#[derive(Args, Clone, Debug)]
pub struct StoreArg {
    /// Store directory [default: $SITEFS_STORE, else $XDG_DATA_HOME/sitefs, else ~/.local/share/sitefs]
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

/// A failure already worded for the user; printed as `error: ...`.
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

pub type CliResult = Result<ExitCode, CliError>;

pub fn main() -> ExitCode {
    let cli = Cli::parse_from(mount_helper_args(std::env::args_os().collect()));
    init_logging(cli.verbose);
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Store(cmd) => store_cmd::run(cmd, quiet),
        Command::Env(cmd) => env_cmd::run(cmd, quiet),
        Command::Manifest(cmd) => mount_cmd::run_manifest(cmd, quiet),
        Command::Mount {
            manifest,
            mountpoint,
            foreground,
            options,
        } => mount_cmd::mount(manifest, mountpoint, &options, foreground),
        Command::Umount { mountpoint } => mount_cmd::umount(&mountpoint),
        Command::Adopt {
            store,
            venv,
            dry_run,
            options,
        } => env_cmd::adopt(&venv, &store, dry_run, &options, quiet).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(CliError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// mount(8) and mount.fuse3 run `sitefs SOURCE MOUNTPOINT -o OPTS`
/// (for `mount -t fuse.sitefs`, fstab and autofs). Rewrite that to
/// `sitefs mount SOURCE MOUNTPOINT -o OPTS`, dropping the `rw` libmount
/// may add by default (the mount is read-only regardless).
fn mount_helper_args(mut args: Vec<OsString>) -> Vec<OsString> {
    const COMMANDS: [&str; 7] = [
        "store", "env", "manifest", "mount", "umount", "adopt", "help",
    ];
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    if args.len() < 3 || first.starts_with('-') || COMMANDS.contains(&first) {
        return args;
    }
    args.insert(1, "mount".into());
    for i in 0..args.len() {
        if args[i] == "-o" && i + 1 < args.len() {
            let opts = args[i + 1].to_string_lossy().into_owned();
            let kept: Vec<&str> = opts.split(',').filter(|o| *o != "rw").collect();
            args[i + 1] = kept.join(",").into();
        }
    }
    args
}

fn init_logging(verbose: u8) {
    // fuser warns when its own unmount at exit finds the mount gone,
    // which is how every foreground mount ends (`sitefs umount`,
    // fusermount3 -u, systemd stopping it).
    let default = match verbose {
        0 => "warn,fuser::session=error",
        1 => "info,fuser::session=error",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp(None)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn mount_helper_convention_becomes_mount() {
        let got = mount_helper_args(args(&[
            "sitefs",
            "/m.toml",
            "/mnt",
            "-o",
            "rw,nosuid,allow_other",
        ]));
        assert_eq!(
            got,
            args(&[
                "sitefs",
                "mount",
                "/m.toml",
                "/mnt",
                "-o",
                "nosuid,allow_other"
            ])
        );
        let normal = args(&["sitefs", "store", "ls"]);
        assert_eq!(mount_helper_args(normal.clone()), normal);
        let flag = args(&["sitefs", "-v", "mount", "a", "b"]);
        assert_eq!(mount_helper_args(flag.clone()), flag);
    }
}
