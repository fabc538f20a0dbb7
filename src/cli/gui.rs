//! `epygibus gui`: arguments of the web face, then [`crate::gui::run`].

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

use super::{Context, EXIT_OK};
use crate::gui::{GuiOptions, run};

#[derive(Args, Debug)]
pub struct GuiArgs {
    /// Port to serve on (default: any free port; the URL printed says which).
    #[arg(long, value_name = "N", default_value_t = 0)]
    port: u16,
    /// Only print the URL; do not open a browser.
    #[arg(long = "no-browser", alias = "no_browser")]
    no_browser: bool,
    /// Address to listen on (default 127.0.0.1). Any other than loopback
    /// lets other machines reach the GUI and needs --password-file.
    #[arg(long, value_name = "ADDR", requires = "password_file")]
    listen: Option<IpAddr>,
    /// A file whose first line is the password that signs browsers in.
    #[arg(long = "password-file", alias = "password_file", value_name = "FILE")]
    password_file: Option<PathBuf>,
}

fn read_password(path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.len() < 8 {
        bail!(
            "the password in {} is shorter than 8 characters; write a longer one on its first line",
            path.display()
        );
    }
    Ok(line)
}

pub fn gui(ctx: &Context, args: GuiArgs) -> anyhow::Result<u8> {
    let password = args.password_file.as_ref().map(read_password).transpose()?;
    let opts = GuiOptions {
        port: args.port,
        listen: args.listen,
        password,
        open_browser: !args.no_browser,
    };
    run(ctx.clone(), opts, &|url| {
        outln!("epygibus gui: serving on {url}");
        outln!("Open that address in a browser (it signs it in); Ctrl-C stops the server.");
    })?;
    Ok(EXIT_OK)
}
