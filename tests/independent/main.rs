//! A Discord client nobody on this project wrote (discord.js with @discordjs/voice, from npm,
//! `client.js`) against the emulator of `tests/support`, run as a standalone server: the check
//! that the emulator behaves like Discord and not only like what serenity and songbird expect.
//!
//! One binary, two modes (`harness = false`, like the benchmark):
//! - `cargo test --test independent`: the check ([`check`]). It starts this same binary with
//!   `--serve` as the standalone emulator, builds a guild through its control API, runs
//!   `node client.js`, sends `/tone`, and asserts what the emulator saw: the login, the
//!   command, the reply, DAVE frames decrypted and decoded to 440 Hz, no protocol errors.
//! - `cargo test --test independent -- --serve [--control-port P ...]`: the standalone
//!   emulator ([`server`]) for any other client; `-- --serve --help` lists the options.
//!
//! Needs Node 20+ and `npm ci --prefix tests/independent` (scripts/deps runs it).

#[path = "../support/mod.rs"]
mod support;

mod check;
mod control;
mod server;

use std::process::ExitCode;

use clap::Parser;

/// The one test this binary runs under `cargo test`.
const TEST_NAME: &str = "discord_js_through_the_standalone_emulator";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        let serve = match server::ServeArgs::try_parse_from(&args) {
            Ok(a) => a,
            Err(e) => e.exit(),
        };
        // A control request that trips one of the emulator's setup assertions is answered
        // 400 (control.rs): one line on stderr says why, not a backtrace note.
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            let at = info.location().map(|l| l.to_string()).unwrap_or_default();
            eprintln!("emulator-server: {} (at {at})", msg.replace('\n', " "));
        }));
        let rt = runtime();
        let result = rt.block_on(server::serve(serve));
        // Not a plain drop: a blocking read of stdin would hold the runtime open.
        rt.shutdown_background();
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("emulator-server: {e}");
                ExitCode::from(2)
            }
        };
    }
    // Started by `cargo test`: the arguments are libtest's (filters, --list, --nocapture...).
    let flags: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    if flags.contains(&"--list") {
        println!("{TEST_NAME}: test");
        return ExitCode::SUCCESS;
    }
    let exact = flags.contains(&"--exact");
    let matches = |f: &str| {
        if exact {
            f == TEST_NAME
        } else {
            TEST_NAME.contains(f)
        }
    };
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut it = flags.iter().copied();
    while let Some(a) = it.next() {
        match a {
            "--skip" => skips.extend(it.next()),
            // libtest options whose value is the next argument.
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" | "--shuffle-seed" => {
                it.next();
            }
            _ if !a.starts_with('-') => filters.push(a),
            _ => {}
        }
    }
    let selected = (filters.is_empty() || filters.iter().any(|f| matches(f)))
        && !skips.iter().any(|s| matches(s));
    if !selected || flags.contains(&"--ignored") {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 1 filtered out\n");
        return ExitCode::SUCCESS;
    }
    println!("\nrunning 1 test");
    let started = std::time::Instant::now();
    runtime().block_on(check::run());
    println!(
        "test {TEST_NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed; finished in {:.2}s\n",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
