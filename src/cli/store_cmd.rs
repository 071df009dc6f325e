//! `sitefs store ...`: add, list, inspect, verify and compile.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use sitefs::interpreter::Interpreter;
use sitefs::store::bytecode::CompilerPool;
use sitefs::store::gc::{self, GcReport};
use sitefs::store::ingest::{self, IngestOptions, Outcome};
use sitefs::store::layout::Dir;
use sitefs::store::lock::UseGuard;
use sitefs::store::roots;
use sitefs::store::verify;
use sitefs::store::Store;

use super::{CliResult, StoreArg};

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Verify wheels and add them to the store (a directory means every *.whl in it).
    Add {
        #[command(flatten)]
        store: StoreArg,
        /// Precompile bytecode with this interpreter (repeatable).
        #[arg(long = "python", value_name = "PY")]
        pythons: Vec<String>,
        /// Wheel files or directories of wheels.
        #[arg(required = true, value_name = "WHEEL_OR_DIR")]
        paths: Vec<PathBuf>,
    },
    /// List the distributions in the store.
    Ls {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Show one distribution's files, entry points and bytecode.
    Info {
        #[command(flatten)]
        store: StoreArg,
        /// NAME or NAME==VERSION.
        spec: String,
    },
    /// Re-hash every object; report each corrupt or missing one.
    Verify {
        #[command(flatten)]
        store: StoreArg,
        /// Move corrupt objects aside and unpublish the dists that need
        /// them, so re-adding their wheels restores them.
        #[arg(long)]
        repair: bool,
    },
    /// Delete every dist, object and pyc that no env, mount or pin needs.
    Gc {
        #[command(flatten)]
        store: StoreArg,
        /// Only report what would be deleted.
        #[arg(long = "dry-run", short = 'n')]
        dry_run: bool,
    },
    /// Keep NAME (every version) or NAME==VERSION through gc.
    Pin {
        #[command(flatten)]
        store: StoreArg,
        #[arg(required = true, value_name = "NAME[==VERSION]")]
        specs: Vec<String>,
    },
    /// Remove pins.
    Unpin {
        #[command(flatten)]
        store: StoreArg,
        #[arg(required = true, value_name = "NAME[==VERSION]")]
        specs: Vec<String>,
    },
    /// List gc roots: envs, live mounts and pins.
    Roots {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Compile bytecode for distributions already in the store with a new interpreter.
    Compile {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long = "python", value_name = "PY", required = true)]
        pythons: Vec<String>,
        /// Only these distributions (NAME or NAME==VERSION); default all.
        specs: Vec<String>,
    },
}

pub fn run(cmd: StoreCommand, quiet: bool) -> CliResult {
    match cmd {
        StoreCommand::Add {
            store,
            pythons,
            paths,
        } => add(store, &pythons, &paths, quiet),
        StoreCommand::Ls { store } => ls(store),
        StoreCommand::Info { store, spec } => info(store, &spec),
        StoreCommand::Verify { store, repair } => verify_cmd(store, repair, quiet),
        StoreCommand::Gc { store, dry_run } => gc_cmd(store, dry_run, quiet),
        StoreCommand::Pin { store, specs } => pin(store, &specs, quiet),
        StoreCommand::Unpin { store, specs } => unpin(store, &specs),
        StoreCommand::Roots { store } => roots_cmd(store),
        StoreCommand::Compile {
            store,
            pythons,
            specs,
        } => compile(store, &pythons, &specs, quiet),
    }
}

fn open(arg: &StoreArg) -> Result<Store, super::CliError> {
    Ok(Store::open(&Store::locate(arg.store.as_deref())?)?)
}

/// Start one compiler pool per requested interpreter, sized to the cores.
pub fn start_pools(pythons: &[String]) -> Result<Vec<CompilerPool>, super::CliError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    pythons
        .iter()
        .map(|py| {
            let interp = Interpreter::probe(py.as_ref())?;
            Ok(CompilerPool::start(&interp, workers)?)
        })
        .collect()
}

fn add(arg: StoreArg, pythons: &[String], paths: &[PathBuf], quiet: bool) -> CliResult {
    let wheels = ingest::expand_sources(paths)?;
    if wheels.is_empty() {
        return Err(super::CliError(format!(
            "no *.whl files in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let pools = start_pools(pythons)?;
    let store = Store::create(&Store::locate(arg.store.as_deref())?)?;
    let _use = UseGuard::acquire(store.root());
    let opts = IngestOptions {
        quiet,
        ..Default::default()
    };
    let mut failed = 0;
    for report in ingest::add_wheels(&store, &wheels, &pools, &opts) {
        let file = report.wheel.file_name().map_or_else(
            || report.wheel.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        match report.result {
            Ok(Outcome::Added(m)) if !quiet => {
                println!("added {} {} ({})", m.name, m.version, m.id)
            }
            Ok(Outcome::AlreadyPresent(m)) if !quiet => {
                println!("already present {} {} ({})", m.name, m.version, m.id)
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {file}: {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn ls(arg: StoreArg) -> CliResult {
    let store = open(&arg)?;
    for m in store.list()? {
        let tags = m.tags.join(",");
        println!(
            "{:<28} {:<14} {:<40} {:>10}  {}",
            m.name,
            m.version,
            tags,
            human(m.unpacked_size),
            m.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn info(arg: StoreArg, spec: &str) -> CliResult {
    let store = open(&arg)?;
    for m in store.find(spec)? {
        let idx = store.load(&m.id)?;
        println!(
            "{} {}\n  id: {}\n  wheel: {} ({} bytes, sha256 {})",
            m.name, m.version, m.id, m.wheel, m.wheel_size, m.wheel_sha256
        );
        println!("  tags: {}", m.tags.join(", "));
        let tags = store.bytecode_tags(&m.id);
        println!(
            "  bytecode: {}",
            if tags.is_empty() {
                "none".to_string()
            } else {
                tags.join(", ")
            }
        );
        println!("  files: {} ({})", m.file_count, human(m.unpacked_size));
        for (group, eps) in &m.entry_points {
            println!("  entry points [{group}]:");
            for (name, value) in eps {
                println!("    {name} = {value}");
            }
        }
        for f in &idx.files {
            println!(
                "    {} {:o} {:>9} {}",
                f.scheme.as_str(),
                f.mode(),
                f.size,
                f.path
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(arg: StoreArg, repair: bool, quiet: bool) -> CliResult {
    let store = open(&arg)?;
    let _use = UseGuard::acquire(store.root());
    let report = verify::verify(&store, quiet)?;
    for p in &report.problems {
        println!("{p}");
    }
    if repair && !report.problems.is_empty() {
        let done = verify::repair(&store, &report)?;
        println!(
            "moved {} damaged object(s) to {}",
            done.moved.len(),
            store.path(Dir::Quarantine).display()
        );
        for (id, wheel) in &done.unpublished {
            println!("unpublished {id}: add it again with `sitefs store add {wheel}`");
        }
        for (tag, n) in &done.recompiled {
            println!("compiled the damaged pycs for {tag} again ({n} dist(s))");
        }
        for tag in &done.no_interpreter {
            println!("no {tag} interpreter known to compile damaged pycs with: run `sitefs store compile --python PY`");
        }
    }
    if !quiet {
        eprintln!(
            "checked {} objects and {} pycs in {} dists: {} problem(s)",
            report.objects_checked,
            report.pycs_checked,
            report.dists_checked,
            report.problems.len()
        );
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn gc_cmd(arg: StoreArg, dry_run: bool, quiet: bool) -> CliResult {
    let store = open(&arg)?;
    let report = gc::gc(&store, dry_run)?;
    for note in &report.notes {
        eprintln!("{}", note.message);
    }
    if !quiet {
        for id in &report.dists {
            println!("{} {id}", if dry_run { "would remove" } else { "removed" });
        }
        println!("{}", gc_summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn gc_summary(r: &GcReport) -> String {
    format!(
        "{} {} ({} dists, {} objects, {} pycs, {} temp files) ; kept {} dists for {} envs, {} mounts, {} pins",
        if r.dry_run { "would free" } else { "freed" },
        human(r.bytes()),
        r.dists.len(),
        r.objects,
        r.pycs,
        r.litter,
        r.live_dists,
        r.env_roots,
        r.mount_roots,
        r.pins
    )
}

fn pin(arg: StoreArg, specs: &[String], quiet: bool) -> CliResult {
    let store = open(&arg)?;
    for spec in specs {
        let ids = roots::pin(&store, spec)?;
        if !quiet {
            println!("pinned {spec} ({})", ids.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn unpin(arg: StoreArg, specs: &[String]) -> CliResult {
    let store = open(&arg)?;
    for spec in specs {
        if !roots::unpin(&store, spec)? {
            return Err(super::CliError(format!(
                "{spec} is not pinned (see `sitefs store roots`)"
            )));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn roots_cmd(arg: StoreArg) -> CliResult {
    let store = open(&arg)?;
    for (_, r) in roots::env_roots(&store) {
        let m = r
            .manifest
            .map(|m| m.display().to_string())
            .unwrap_or_default();
        println!("env    {m} ({} dists)", r.dists.len());
    }
    for (_, r) in roots::mount_roots(&store) {
        let mp = r
            .mountpoint
            .map(|m| m.display().to_string())
            .unwrap_or_default();
        let owner = r
            .owner
            .map(|o| format!("{} pid {}", o.host, o.pid))
            .unwrap_or_default();
        println!("mount  {mp} ({} dists, {owner})", r.dists.len());
    }
    for p in roots::pins(&store) {
        println!("pin    {p}");
    }
    Ok(ExitCode::SUCCESS)
}

fn compile(arg: StoreArg, pythons: &[String], specs: &[String], quiet: bool) -> CliResult {
    let store = open(&arg)?;
    let metas = if specs.is_empty() {
        store.list()?
    } else {
        let mut v = Vec::new();
        for s in specs {
            v.extend(store.find(s)?);
        }
        v
    };
    let pools = start_pools(pythons)?;
    store.require_writable()?;
    let _use = UseGuard::acquire(store.root());
    let ids: Vec<String> = metas.into_iter().map(|m| m.id).collect();
    let n = ingest::ensure_bytecode(&store, &ids, &pools, quiet)?;
    if !quiet {
        println!("compiled bytecode for {n} distribution(s)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Sizes as `ls -h` shows them.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
