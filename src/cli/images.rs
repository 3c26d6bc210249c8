//! `boxr import`, `images`, `inspect`, `rmi`, `gc`.

use std::path::PathBuf;

use super::format::{ago, human_size, plural, table};
use super::{Settings, exit, fail_with};
use crate::store::{Access, Store};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A root filesystem: a directory or a tarball (.tar, .tar.gz, .tar.zst)
    rootfs: PathBuf,
    /// The name to tag the image with (NAME[:TAG])
    name: String,
}

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Only show image ids
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A Go template for each one instead of the JSON array: {{.State.Pid}}, {{json .Config}},
    /// {{index .Config.Labels "key"}}
    #[arg(short, long, value_name = "TEMPLATE")]
    format: Option<String>,
    /// Images or containers: NAME[:TAG], a name, an id or an id prefix
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Images to remove: NAME[:TAG] untags, an id removes every tag of that image
    #[arg(required = true)]
    images: Vec<String>,
}

fn open(settings: &Settings, access: Access) -> Result<Store, i32> {
    let mut store =
        Store::open(&settings.root, access).map_err(|e| fail_with(&settings.printer, &e))?;
    store.set_sync(settings.sync);
    Ok(store)
}

pub fn import(args: &ImportArgs, settings: &Settings) -> i32 {
    let epoch = match crate::time::source_date_epoch(crate::time::EpochDefault::Zero) {
        Ok(e) => e,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    let store = match open(settings, Access::Shared) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match store.import(&args.rootfs, &args.name, epoch) {
        Ok(img) => {
            settings.printer.data(format!("{}\n", img.id));
            exit::OK
        }
        Err(e) => fail_with(&settings.printer, &e),
    }
}

pub fn images(args: &ImagesArgs, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Shared) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let list = match store.summaries() {
        Ok(l) => l,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    if args.quiet {
        let mut ids: Vec<String> = list.iter().map(|s| s.id.short()).collect();
        ids.dedup();
        for id in ids {
            settings.printer.data(format!("{id}\n"));
        }
        return exit::OK;
    }
    match args.format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&list).expect("serializes");
            settings.printer.data(format!("{text}\n"));
        }
        Format::Table => {
            let now = crate::time::now_secs();
            let rows: Vec<[String; 5]> = list
                .iter()
                .map(|s| {
                    [
                        s.repository.clone(),
                        s.tag.clone(),
                        s.id.short(),
                        s.created
                            .as_deref()
                            .and_then(crate::time::parse_rfc3339)
                            .map_or("N/A".into(), |t| ago(now - t)),
                        human_size(s.size),
                    ]
                })
                .collect();
            let header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"].map(String::from);
            settings
                .printer
                .data(table(&[&[header], &rows[..]].concat()));
        }
    }
    exit::OK
}

/// `inspect` of a name that is neither a container nor an image.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("no such object: {0}")]
#[diagnostic(
    code(boxr::cli::no_such_object),
    help("`boxr ps -a` lists the containers, `boxr images` the images")
)]
struct NoSuchObject(String);

pub fn inspect(args: &InspectArgs, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Shared) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut out = Vec::new();
    let mut code = exit::OK;
    for q in &args.images {
        // A container first, then an image, as `docker inspect` looks (a container named as
        // its image is the container).
        if let Ok(info) = crate::container::state::find(&store, q) {
            out.push(crate::container::inspect::inspect(&store, &info));
            continue;
        }
        match store.resolve(q).and_then(|img| store.inspect(&img)) {
            Ok(v) => out.push(v),
            // Neither a container nor an image: Docker's "No such object".
            Err(crate::store::StoreError::NoSuchImage { query }) => {
                settings.printer.diagnostic(&NoSuchObject(query));
                code = exit::INVALID;
            }
            Err(e) => {
                settings.printer.diagnostic(&e);
                code = exit::INVALID;
            }
        }
    }
    if let Some(t) = &args.format {
        for v in &out {
            match super::template::render(t, v) {
                Ok(text) => settings.printer.data(format!("{text}\n")),
                Err(e) => return super::fail_with(&settings.printer, &e),
            }
        }
        return code;
    }
    let text = serde_json::to_string_pretty(&out).expect("serializes");
    settings.printer.data(format!("{text}\n"));
    code
}

pub fn rmi(args: &RmiArgs, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Exclusive) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut code = exit::OK;
    for q in &args.images {
        match store.untag(q) {
            Ok(r) => {
                for t in &r.untagged {
                    settings.printer.out(format!("Untagged: {t}"));
                }
                if let Some(id) = r.deleted {
                    settings.printer.out(format!("Deleted: {id}"));
                }
            }
            Err(e) => {
                settings.printer.diagnostic(&e);
                code = exit::INVALID;
            }
        }
    }
    if let Err(e) = store.gc(Access::Exclusive, false) {
        return fail_with(&settings.printer, &e);
    }
    code
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Also remove the build cache: cached steps and `cache` mounts
    #[arg(long)]
    build_cache: bool,
}

pub fn gc(args: &GcArgs, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Exclusive) {
        Ok(s) => s,
        Err(c) => return c,
    };
    // Kernel resources first: cgroups a killed boxr left (the store lock is exclusive, so no
    // boxr is starting one right now).
    let cgroups = match store.clean_journal("cgroup", crate::sandbox::cgroup::clean_journal_entry) {
        Ok(n) => n,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    // Network namespaces and veths of removed containers, bridges of removed networks.
    let network = store
        .clean_journal("ports", |b| {
            crate::net::publish::clean_journal_entry(&store, b)
        })
        .and_then(|n| {
            Ok(n + store.clean_journal("netns", |b| crate::net::clean_journal_entry(&store, b))?)
        })
        .and_then(|n| {
            Ok(n + store.clean_journal("bridge", |b| crate::net::clean_bridge_entry(&store, b))?)
        })
        .and_then(|n| {
            Ok(n + store
                .clean_journal("dns", |b| crate::net::dns::clean_journal_entry(&store, b))?)
        })
        .and_then(|n| {
            Ok(n + store.clean_journal("pasta", |b| {
                crate::net::pasta::clean_journal_entry(&store, b)
            })?)
        });
    let network = match network {
        Ok(n) => n,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    match store.gc(Access::Exclusive, args.build_cache) {
        Ok(mut r) => {
            r.cgroups = cgroups;
            r.network = network;
            if settings.printer.is_json() {
                settings.printer.data(format!(
                    "{}\n",
                    serde_json::to_string(&r).expect("serializes")
                ));
            } else {
                settings.printer.out(format!(
                    "removed {} blob{}, {} layer{}, {} cache entr{}, {} temporary item{}, {} cgroup{}, {} network resource{}; freed {}",
                    r.blobs,
                    plural(r.blobs),
                    r.layers,
                    plural(r.layers),
                    r.cache_entries,
                    if r.cache_entries == 1 { "y" } else { "ies" },
                    r.tmp,
                    plural(r.tmp),
                    r.cgroups,
                    plural(r.cgroups),
                    r.network,
                    plural(r.network),
                    human_size(r.bytes)
                ));
                for name in &r.broken_refs {
                    settings
                        .printer
                        .out(format!("warning: {name} points at an unreadable image; `boxr rmi {name}` removes it"));
                }
            }
            exit::OK
        }
        Err(e) => fail_with(&settings.printer, &e),
    }
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Images to save: NAME[:TAG] or an id
    #[arg(required = true)]
    images: Vec<String>,
    /// Write to this file (or directory, with --format oci-dir)
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// Archive format
    #[arg(long, value_enum, default_value_t = crate::store::exchange::SaveFormat::Oci)]
    format: crate::store::exchange::SaveFormat,
    /// Compression of layers boxr made (default none, as `docker save` and `podman save` write
    /// them; layers loaded or pulled from elsewhere keep theirs; docker archives are
    /// uncompressed)
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

impl CompressionArg {
    pub fn compression(self) -> crate::layer::compress::Compression {
        use crate::layer::compress::Compression;
        match self {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// An OCI image layout (directory or tar) or a docker-archive tarball (gzip/zstd allowed)
    #[arg(short, long, value_name = "PATH")]
    input: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// The image: NAME[:TAG] or an id
    source: String,
    /// The new name: NAME[:TAG]
    target: String,
}

pub fn save(args: &SaveArgs, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Shared) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut images = Vec::new();
    for q in &args.images {
        let result = store.resolve(q).and_then(|img| {
            // Record the name given, or every tag when an id was given.
            let names = match crate::store::ref_key(q) {
                Ok(k) if store.refs()?.contains_key(&k) => vec![k],
                _ => store.tags_of(&img.manifest_digest)?,
            };
            Ok((img, names))
        });
        match result {
            Ok(x) => images.push(x),
            Err(e) => return fail_with(&settings.printer, &e),
        }
    }
    let compression = args.compression.compression();
    match store.save(&images, args.format, compression, &args.output) {
        Ok(()) => exit::OK,
        Err(e) => fail_with(&settings.printer, &e),
    }
}

pub fn load(args: &LoadArgs, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Shared) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match store.load(&args.input) {
        Ok(loaded) => {
            for l in loaded {
                if l.names.is_empty() {
                    settings
                        .printer
                        .out(format!("Loaded image ID: {}", l.image.id));
                }
                for n in l.names {
                    settings.printer.out(format!("Loaded image: {n}"));
                }
            }
            exit::OK
        }
        Err(e) => fail_with(&settings.printer, &e),
    }
}

pub fn tag(args: &TagArgs, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Shared) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let result = store.resolve(&args.source).and_then(|img| {
        let key = crate::store::ref_key(&args.target)?;
        store.set_ref(&key, img.manifest_digest)
    });
    match result {
        Ok(_) => exit::OK,
        Err(e) => fail_with(&settings.printer, &e),
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create {
        /// Volume names
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List volumes
    Ls {
        /// Only show names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove volumes and their data
    Rm {
        /// Volume names
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn volume(cmd: &VolumeCommand, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Shared) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let result = match cmd {
        VolumeCommand::Create { names } => names.iter().try_for_each(|n| {
            store.volume(n)?;
            settings.printer.out(n);
            Ok(())
        }),
        VolumeCommand::Ls { quiet } => store.volumes().map(|names| {
            if !quiet {
                settings.printer.out("DRIVER    VOLUME NAME");
            }
            for n in names {
                settings.printer.data(if *quiet {
                    format!("{n}\n")
                } else {
                    format!("local     {n}\n")
                });
            }
        }),
        VolumeCommand::Rm { names } => names.iter().try_for_each(|n| {
            store.remove_volume(n)?;
            settings.printer.out(n);
            Ok(())
        }),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => fail_with(&settings.printer, &e),
    }
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Do not cut the CREATED BY column
    #[arg(long)]
    no_trunc: bool,
    /// Only the image's id
    #[arg(short, long)]
    quiet: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    image: String,
}

/// `boxr history IMAGE`: its steps, newest first, with the size of each one's layer.
pub fn history(args: &HistoryArgs, settings: &Settings) -> i32 {
    let store = match open(settings, Access::Shared) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let img = match store.resolve(&args.image) {
        Ok(i) => i,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    if args.quiet {
        settings.printer.data(format!("{}\n", img.id.short()));
        return exit::OK;
    }
    let rows = store.history(&img);
    match args.format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&rows).expect("serializes");
            settings.printer.data(format!("{text}\n"));
        }
        Format::Table => {
            let now = crate::time::now_secs();
            let cells: Vec<[String; 5]> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut by = r.created_by.clone();
                    if !args.no_trunc && by.chars().count() > 45 {
                        by = by.chars().take(44).collect::<String>() + "…";
                    }
                    [
                        // Only the top entry is an image of its own, as docker shows it.
                        if i == 0 {
                            img.id.short()
                        } else {
                            "<missing>".into()
                        },
                        r.created
                            .as_deref()
                            .and_then(crate::time::parse_rfc3339)
                            .map_or("N/A".into(), |t| ago(now - t)),
                        by,
                        human_size(r.size),
                        r.comment.clone(),
                    ]
                })
                .collect();
            let header = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(String::from);
            settings
                .printer
                .data(table(&[&[header], &cells[..]].concat()));
        }
    }
    exit::OK
}
