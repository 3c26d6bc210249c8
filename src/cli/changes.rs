//! `boxr commit`, `diff`, `cp`, `export`: a container's filesystem, read or turned into an image.

use super::{Settings, exit, fail, fail_with};
use crate::container::state;
use crate::container::{commit, cp};
use crate::store::{Access, Store};

fn open(settings: &Settings) -> Result<Store, i32> {
    Store::open(&settings.root, Access::Shared).map_err(|e| fail_with(&settings.printer, &e))
}

#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// A comment for the image's history entry
    #[arg(short, long)]
    message: Option<String>,
    /// The image's author
    #[arg(short, long)]
    author: Option<String>,
    /// A Dockerfile instruction for the image's config: CMD, ENTRYPOINT, ENV, LABEL, WORKDIR,
    /// USER, STOPSIGNAL, EXPOSE, VOLUME
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    container: String,
    /// The new image's name: REPOSITORY[:TAG]
    reference: Option<String>,
}

/// `boxr commit`: prints the new image's id.
pub fn commit(args: &CommitArgs, settings: &Settings) -> i32 {
    let epoch = match crate::time::source_date_epoch(crate::time::EpochDefault::Now) {
        Ok(e) => e,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let opts = commit::CommitOptions {
        reference: args.reference.clone(),
        message: args.message.clone(),
        author: args.author.clone(),
        changes: args.change.clone(),
        epoch,
    };
    match state::find(&store, &args.container).and_then(|i| commit::commit(&store, &i, &opts)) {
        Ok(img) => {
            settings.printer.data(format!("{}\n", img.id));
            super::exit::OK
        }
        Err(e) => fail_with(&settings.printer, &e),
    }
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    container: String,
}

/// `boxr diff`: one `A|C|D /path` line per change, in path order.
pub fn diff(args: &DiffArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match state::find(&store, &args.container).and_then(|i| commit::diff(&i)) {
        Ok(changes) => {
            let out: String = changes
                .iter()
                .map(|(kind, path)| format!("{} {path}\n", kind.letter()))
                .collect();
            settings.printer.data(out);
            super::exit::OK
        }
        Err(e) => fail_with(&settings.printer, &e),
    }
}

#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Keep the owners of what is copied (else: the container's root inside, you outside)
    #[arg(short, long)]
    archive: bool,
    /// CONTAINER:PATH or a host path
    src: String,
    /// CONTAINER:PATH or a host path
    dest: String,
}

/// `boxr cp`: files between a container and the host.
pub fn cp(args: &CpArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let (src, dest) = (
        cp::Location::parse(&args.src),
        cp::Location::parse(&args.dest),
    );
    match cp::cp(&store, &src, &dest, args.archive) {
        Ok(warnings) => {
            for w in warnings {
                settings.printer.note(w);
            }
            super::exit::OK
        }
        Err(e) => fail_with(&settings.printer, &e),
    }
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write the tar to this file (default: standard output, if it is not a terminal)
    #[arg(short, long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    container: String,
}

/// `boxr export`: the container's filesystem as one tar.
pub fn export(args: &ExportArgs, settings: &Settings) -> i32 {
    use std::io::IsTerminal;
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return fail(
            &settings.printer,
            "refusing to write a tar to a terminal: give -o FILE or redirect the output",
        );
    }
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let result = state::find(&store, &args.container).and_then(|info| match &args.output {
        Some(path) => commit::export_to_file(&store, &info, path),
        None => commit::export(&store, &info, &mut std::io::stdout().lock()),
    });
    match result {
        Ok(()) => exit::OK,
        Err(e) => fail_with(&settings.printer, &e),
    }
}
