//! `boxr pull`, `push`, `login`, `logout`, and the pull `run` and `create` do for an absent
//! image.
#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Mutex;

use clap::ArgAction;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::images::CompressionArg;
use super::{Printer, Progress, Settings, exit, fail, fail_with};
use crate::builder::bases::Pull;
use crate::reference::ImageRef;
use crate::registry::{
    self, Client, Credentials, Event, Observer, Options, Outcome, PlatformSpec, PullOptions,
    PushOptions,
};
use crate::store::{Access, Store};

/// How registries are reached: the flags `pull`, `push`, `login`, `run`, `create` share.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Require HTTPS with a verified certificate; false allows plain HTTP and any certificate
    /// (loopback registries may be plain HTTP either way)
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    tls_verify: bool,
    /// A directory of per-registry certificates: HOST[:PORT]/*.crt (CAs), *.cert + *.key
    /// (a client certificate); searched before /etc/boxr, /etc/containers, /etc/docker certs.d
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
}

impl Default for TlsArgs {
    fn default() -> Self {
        TlsArgs {
            tls_verify: true,
            cert_dir: None,
        }
    }
}

impl TlsArgs {
    pub(super) fn options(&self) -> Options {
        let mut o = Options::from_env();
        o.tls_verify = self.tls_verify;
        if let Some(d) = &self.cert_dir {
            o.cert_dirs.insert(0, d.clone());
        }
        o
    }
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The image: [REGISTRY/]REPOSITORY[:TAG|@DIGEST] (no registry means docker.io)
    reference: String,
    /// The platform to pull from a multi-platform image: OS/ARCH[/VARIANT]
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Pull every tag of the repository
    #[arg(short = 'a', long)]
    all_tags: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The image: NAME[:TAG] or an id
    image: String,
    /// Where to: [REGISTRY/]REPOSITORY[:TAG] (default: the image's name)
    dest: Option<String>,
    /// How layers built here are compressed (pulled layers are pushed as they came)
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// Also write the pushed manifest's digest to this file
    #[arg(long, value_name = "FILE")]
    digestfile: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The registry: HOST[:PORT] (default: docker.io)
    registry: Option<String>,
    /// The user name
    #[arg(short, long)]
    username: Option<String>,
    /// The password (prefer --password-stdin: arguments are visible to other users)
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry: HOST[:PORT] (default: docker.io)
    registry: Option<String>,
    /// Forget every registry
    #[arg(short, long, conflicts_with = "registry")]
    all: bool,
}

/// Transfer progress: a bar per blob on a terminal, a line per blob otherwise.
pub(super) struct View<'p> {
    printer: &'p Printer,
    tty: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
    pushing: bool,
}

impl<'p> View<'p> {
    pub(super) fn new(printer: &'p Printer, pushing: bool) -> View<'p> {
        let tty = (printer.mode() == Progress::Tty
            && !printer.quiet()
            && std::io::stderr().is_terminal())
        .then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        View {
            printer,
            tty,
            pushing,
        }
    }
}

impl Observer for View<'_> {
    fn event(&self, event: Event<'_>) {
        if self.printer.quiet() {
            return;
        }
        let json = self.printer.is_json();
        match event {
            Event::Resolved { reference, digest } => {
                if json {
                    self.printer
                        .note(format!("{reference} resolved to {digest}"));
                } else {
                    self.printer.note(format!("{reference}: {digest}"));
                }
            }
            Event::Started { digest, size } => {
                if let Some((multi, bars)) = &self.tty {
                    let bar = multi.add(ProgressBar::new(size));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
                        )
                        .expect("a valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(digest.short());
                    bars.lock()
                        .expect("not poisoned")
                        .insert(digest.to_string(), bar);
                }
            }
            Event::Progress { digest, bytes } => {
                if let Some((_, bars)) = &self.tty
                    && let Some(bar) = bars.lock().expect("not poisoned").get(&digest.to_string())
                {
                    bar.set_position(bytes);
                }
            }
            Event::Done { digest, outcome } => {
                let what = match (outcome, self.pushing) {
                    (Outcome::Downloaded, _) => "Pull complete",
                    (Outcome::Present, false) => "Already exists",
                    (Outcome::Present, true) => "Layer already exists",
                    (Outcome::Uploaded, _) => "Pushed",
                    (Outcome::Mounted, _) => "Mounted from another repository",
                };
                let line = format!("{}: {what}", digest.short());
                match &self.tty {
                    Some((multi, bars)) => {
                        if let Some(bar) = bars
                            .lock()
                            .expect("not poisoned")
                            .remove(&digest.to_string())
                        {
                            bar.finish_and_clear();
                            multi.remove(&bar);
                        }
                        let _ = multi.println(line);
                    }
                    None => self.printer.note(line),
                }
            }
        }
    }
}

fn open(settings: &Settings) -> Result<Store, i32> {
    let mut store = Store::open(&settings.root, Access::Shared)
        .map_err(|e| fail_with(&settings.printer, &e))?;
    store.set_sync(settings.sync);
    Ok(store)
}

/// A registry failure: the diagnostic, exit code 1 (as `docker pull` and `push`).
fn failed(printer: &Printer, e: &registry::RegistryError) -> i32 {
    printer.diagnostic(e);
    exit::INVALID
}

fn parse_ref(printer: &Printer, text: &str) -> Result<ImageRef, i32> {
    ImageRef::parse(text)
        .map_err(|reason| fail(printer, &format!("invalid reference `{text}`: {reason}")))
}

pub fn pull(args: &PullArgs, settings: &Settings) -> i32 {
    let p = &settings.printer;
    let reference = match parse_ref(p, &args.reference) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let platform = match args
        .platform
        .as_deref()
        .map(PlatformSpec::parse)
        .transpose()
    {
        Ok(pl) => pl.unwrap_or_else(PlatformSpec::host),
        Err(m) => return fail(p, &format!("--platform: {m}")),
    };
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let client = Client::new(args.tls.options());
    let refs = if args.all_tags {
        if reference.tag.is_some() || reference.digest.is_some() {
            return fail(p, "--all-tags takes a repository without a tag or digest");
        }
        match registry::tags(&client, &reference) {
            Ok(tags) => tags
                .into_iter()
                .map(|t| ImageRef {
                    tag: Some(t),
                    ..reference.clone()
                })
                .collect(),
            Err(e) => return failed(p, &e),
        }
    } else {
        vec![reference]
    };
    let view = View::new(p, false);
    let opts = PullOptions { platform };
    for r in refs {
        match registry::pull(&client, &store, &r, &opts, &view) {
            Ok(pulled) => {
                if pulled.downloaded == 0 {
                    p.note(format!("Image is up to date for {}", pulled.name));
                } else {
                    p.note(format!("Downloaded newer image for {}", pulled.name));
                }
                p.out(&pulled.name);
            }
            Err(e) => return failed(p, &e),
        }
    }
    exit::OK
}

pub fn push(args: &PushArgs, settings: &Settings) -> i32 {
    let p = &settings.printer;
    let dest = match parse_ref(p, args.dest.as_deref().unwrap_or(&args.image)) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let image = match store.resolve(&args.image) {
        Ok(i) => i,
        Err(e) => return fail_with(p, &e),
    };
    let client = Client::new(args.tls.options());
    let opts = PushOptions {
        compression: args.compression.compression(),
    };
    match registry::push(&client, &store, &image, &dest, &opts, &View::new(p, true)) {
        Ok(digest) => {
            if let Some(f) = &args.digestfile
                && let Err(e) = std::fs::write(f, digest.to_string())
            {
                return fail(p, &format!("cannot write {}: {e}", f.display()));
            }
            p.note(format!("Pushed {}", dest.normalized()));
            p.data(format!("{digest}\n"));
            exit::OK
        }
        Err(e) => failed(p, &e),
    }
}

pub fn login(args: &LoginArgs, settings: &Settings) -> i32 {
    let p = &settings.printer;
    let domain = registry::registry_domain(args.registry.as_deref().unwrap_or(""));
    let Some(username) = args.username.clone() else {
        return fail(p, "give the user name with -u (boxr does not prompt)");
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(pw), _) => pw.clone(),
        (None, true) => {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                return fail(p, &format!("cannot read the password from stdin: {e}"));
            }
            s.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => return fail(p, "give the password with --password-stdin (or -p)"),
    };
    match registry::login(
        args.tls.options(),
        &domain,
        Credentials { username, password },
    ) {
        Ok(file) => {
            p.verbose(format!("credentials saved in {}", file.display()));
            p.out("Login Succeeded");
            exit::OK
        }
        Err(e) => failed(p, &e),
    }
}

pub fn logout(args: &LogoutArgs, settings: &Settings) -> i32 {
    let p = &settings.printer;
    let domain =
        (!args.all).then(|| registry::registry_domain(args.registry.as_deref().unwrap_or("")));
    match registry::remove_login(domain.as_deref()) {
        Ok(removed) if removed.is_empty() => match &domain {
            Some(d) => fail(p, &format!("not logged in to {d}")),
            None => exit::OK,
        },
        Ok(removed) => {
            for r in removed {
                p.out(format!("Removed login credentials for {r}"));
            }
            exit::OK
        }
        Err(e) => failed(p, &e),
    }
}

/// Before `run` or `create`: pulls the image as `policy` says. A name or id the store has is
/// used as it is under `missing`; only a reference (not an id) is pulled.
pub fn ensure_image(
    store: &Store,
    image: &str,
    policy: Pull,
    tls: &TlsArgs,
    printer: &Printer,
) -> Result<(), i32> {
    if policy == Pull::Never || (policy == Pull::Missing && store.resolve(image).is_ok()) {
        return Ok(());
    }
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    if image.starts_with("sha256:")
        || (hex.len() >= 12
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && store.resolve(image).is_ok())
    {
        return Ok(());
    }
    let reference = parse_ref(printer, image)?;
    if policy == Pull::Missing {
        printer.note(format!("Unable to find image '{image}' locally"));
    }
    let client = Client::new(tls.options());
    registry::pull(
        &client,
        store,
        &reference,
        &PullOptions::default(),
        &View::new(printer, false),
    )
    .map(|_| ())
    .map_err(|e| {
        printer.diagnostic(&e);
        exit::FAILED
    })
}
