//! Administrator commands: `/resources` (live figures) and `/cleanup` (reclaim now).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use poise::serenity_prelude as serenity;
use poise::CreateReply;

use crate::discord::bot::{Bot, Context, Error};
use crate::discord::reply;
use crate::player::Request;
use crate::resources::report::{CacheFigures, ClusterFigures, ResourceReport};
use crate::resources::{CleanupReason, Kind};
use crate::status::ProcessMeter;

/// How long `/resources` keeps its message live, and how often it refreshes.
const LIVE_FOR: Duration = Duration::from_secs(60);
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Members with Manage Server (or Administrator), plus the roles and users in config.
/// Everyone else gets a private refusal and the command does not run.
pub async fn is_admin(ctx: Context<'_>) -> Result<bool, Error> {
    let admin = &ctx.data().config.admin;
    let user = ctx.author().id.get();
    let member = match ctx {
        poise::Context::Application(app) => app.interaction.member.clone(),
        poise::Context::Prefix(_) => None,
    };
    let by_permission = member
        .as_ref()
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.manage_guild() || p.administrator());
    let by_role = member
        .as_ref()
        .is_some_and(|m| m.roles.iter().any(|r| admin.roles.contains(&r.get())));
    let allowed = by_permission || by_role || admin.users.contains(&user);
    if !allowed {
        reply::error(ctx, "Only server managers can use this command.").await?;
    }
    Ok(allowed)
}

/// Live resource figures: calls, queues, processes, tasks, memory, CPU, cache, cleanups
#[poise::command(
    slash_command,
    guild_only,
    default_member_permissions = "MANAGE_GUILD",
    check = "is_admin"
)]
pub async fn resources(ctx: Context<'_>) -> Result<(), Error> {
    // Gathering asks every guild's actor and, the first time, `yt-dlp --version`: on a busy
    // box that can pass Discord's 3 s answer window, so acknowledge first.
    ctx.defer().await?;
    let bot = ctx.data().clone();
    let _unit = bot.registry.acquire(Kind::Task);
    let button_id = format!("resources-refresh-{}", ctx.id());
    let render = |report: &ResourceReport| {
        CreateReply::default().embed(embed(report)).components(vec![
            serenity::CreateActionRow::Buttons(vec![serenity::CreateButton::new(
                button_id.clone(),
            )
            .label("Refresh")
            .style(serenity::ButtonStyle::Secondary)]),
        ])
    };
    let mut meter = bot.status.process_meter();
    let report = gather(&bot, &mut meter).await;
    let handle = ctx.send(render(&report)).await?;
    let until = Instant::now() + LIVE_FOR;
    // Refresh in place every few seconds (or on the button) for about a minute.
    while Instant::now() < until {
        let press = serenity::ComponentInteractionCollector::new(ctx.serenity_context())
            .custom_ids(vec![button_id.clone()])
            .timeout(REFRESH_EVERY);
        let pressed = tokio::select! {
            p = press => p,
            _ = bot.shutdown.cancelled() => break,
        };
        let report = gather(&bot, &mut meter).await;
        match pressed {
            Some(press) if press.user.id == ctx.author().id => {
                let msg = serenity::CreateInteractionResponseMessage::new().embed(embed(&report));
                press
                    .create_response(ctx, serenity::CreateInteractionResponse::UpdateMessage(msg))
                    .await?;
            }
            Some(press) => {
                let msg = serenity::CreateInteractionResponseMessage::new()
                    .content("Only the person who asked can refresh this.")
                    .ephemeral(true);
                press
                    .create_response(ctx, serenity::CreateInteractionResponse::Message(msg))
                    .await?;
            }
            None => handle.edit(ctx, render(&report)).await?,
        }
    }
    // Leave the last figures without a button that no longer works.
    let report = gather(&bot, &mut meter).await;
    handle
        .edit(
            ctx,
            CreateReply::default()
                .embed(embed(&report))
                .components(vec![]),
        )
        .await?;
    Ok(())
}

fn embed(report: &ResourceReport) -> serenity::CreateEmbed {
    let mut e = serenity::CreateEmbed::new()
        .colour(crate::discord::reply::OK)
        .title("Resources");
    for (name, value) in report.fields() {
        e = e.field(name, value, false);
    }
    e.footer(serenity::CreateEmbedFooter::new(
        "Live for a minute; press Refresh for new figures.",
    ))
}

/// Collects the figures. `meter` belongs to one live message: its CPU% is the use since
/// that message's previous refresh.
pub async fn gather(bot: &Bot, meter: &mut ProcessMeter) -> ResourceReport {
    let status = &bot.status;
    let mut r = ResourceReport {
        uptime: status.uptime(),
        ..Default::default()
    };
    // Asked all at once: one slow actor (a track starting) must not hold up the rest.
    let asks = bot.players.guilds().into_iter().filter_map(|guild| {
        let p = bot.players.get(guild)?;
        Some(async move { p.ask(|reply| Request::Snapshot { reply }).await.ok() })
    });
    for s in futures::future::join_all(asks).await.into_iter().flatten() {
        r.queues += 1;
        r.queued_tracks += s.upcoming.len() + usize::from(s.current.is_some());
        if s.voice_channel.is_some() {
            r.calls_active += 1;
            match (&s.current, s.paused) {
                (Some(_), false) => r.calls_playing += 1,
                (Some(_), true) => r.calls_paused += 1,
                (None, _) => r.calls_idle += 1,
            }
        }
    }
    r.kinds = Kind::ALL
        .iter()
        .map(|k| (*k, bot.registry.stats(*k)))
        .collect::<BTreeMap<_, _>>();
    let y = status.ytdlp_processes();
    r.ytdlp_running = y.running;
    r.ytdlp_spawned = y.spawned;
    r.ytdlp_timed_out = y.timed_out;
    r.ytdlp_version = status.ytdlp_version().await;
    r.tokio_tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let mixer = status.mixer().await;
    r.mixer_tasks_live = mixer.live;
    r.mixer_threads = mixer.threads;
    r.mixer_cost_us = mixer.cost_us;
    let p = meter.read();
    r.cpu_percent = p.cpu_percent;
    r.rss_bytes = p.rss_bytes;
    r.threads = p.threads;
    r.open_fds = p.open_fds;
    r.cache = cache_figures(bot).await;
    r.cleanups = bot.registry.cleanups();
    r.leaks = bot.registry.leaks();
    r.errors = bot.registry.errors();
    r.cluster = match bot.cluster.get() {
        None => None,
        Some(c) => Some(match c.nodes().await {
            Ok(nodes) => ClusterFigures {
                this_node: c.node().id.clone(),
                nodes,
                error: None,
            },
            Err(e) => ClusterFigures {
                error: Some(e.to_string()),
                ..Default::default()
            },
        }),
    };
    r
}

async fn cache_figures(bot: &Bot) -> Option<CacheFigures> {
    let s = bot.resolver.stats().await;
    s.enabled.then_some(CacheFigures {
        entries: s.entries,
        audio_files: s.audio_files,
        audio_bytes: s.audio_bytes,
        hits: s.counters.hits,
        misses: s.counters.misses,
    })
}

/// Reclaim idle resources now: leave idle calls (or all), kill stray processes, trim the cache
#[poise::command(
    slash_command,
    guild_only,
    default_member_permissions = "MANAGE_GUILD",
    check = "is_admin"
)]
pub async fn cleanup(
    ctx: Context<'_>,
    #[description = "Also leave calls that are playing (default: only idle ones)"] all: Option<
        bool,
    >,
    #[description = "Also update the bot's own yt-dlp now (when it manages one)"]
    update_ytdlp: Option<bool>,
) -> Result<(), Error> {
    let bot = ctx.data().clone();
    ctx.defer().await?;
    let all = all.unwrap_or(false);
    let (left, swept) = cleanup_node(&bot, all).await;
    let text = format!(
        "Reclaimed: {left} voice call{} ({}), {} stray call{}, {} yt-dlp process{}, {} cache entr{}.",
        if left == 1 { "" } else { "s" },
        if all { "all" } else { "idle" },
        swept.orphan_calls + swept.ghost_calls,
        if swept.orphan_calls + swept.ghost_calls == 1 { "" } else { "s" },
        swept.killed_processes,
        if swept.killed_processes == 1 { "" } else { "es" },
        swept.expired_cache_entries,
        if swept.expired_cache_entries == 1 { "y" } else { "ies" },
    );
    let mut text = text;
    if let (true, Some(cluster)) = (all, bot.cluster.get()) {
        text.push_str(match cluster.ask_all_to_clean_up().await {
            Ok(()) => "\nEvery other node was asked to do the same.",
            Err(_) => "\nThe other nodes could not be reached through the database.",
        });
    }
    if update_ytdlp == Some(true) {
        let line = match &bot.managed {
            None => "yt-dlp is not managed by the bot (set ytdlp.managed = true).".to_string(),
            Some(m) => match m.update_now().await {
                Ok(outcome) => format!("{outcome}."),
                Err(e) => format!("{e:#}"),
            },
        };
        text.push('\n');
        text.push_str(&line);
    }
    tracing::info!(user = %ctx.author().id, all, left, ?swept, "admin cleanup");
    reply::ok(ctx, text).await
}

/// `/cleanup` on this node: its idle calls (or all of them), then a forced sweep.
/// Returns how many calls were left, and what the sweep reclaimed.
pub async fn cleanup_node(bot: &Bot, all: bool) -> (usize, crate::resources::sweeper::SweepReport) {
    let mut left = 0;
    for guild in bot.players.guilds() {
        if bot.players.cleanup(guild, CleanupReason::Admin, !all).await {
            left += 1;
        }
    }
    (left, bot.sweeper.sweep(true).await)
}

/// Parses a humantime duration typed by an administrator ("5m", "90s", "0" = off).
fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" || t.eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|_| {
        format!("{field}: write a duration like `5m`, `90s` or `1h` (`0` turns it off)")
    })
}

fn show_duration(d: Duration) -> String {
    if d.is_zero() {
        "off".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// Show or change this server's settings (administrators)
#[allow(clippy::too_many_arguments)] // one option per setting, as Discord shows them
#[poise::command(
    slash_command,
    guild_only,
    default_member_permissions = "MANAGE_GUILD",
    check = "is_admin"
)]
pub async fn settings(
    ctx: Context<'_>,
    #[description = "Leave after nothing played for this long (e.g. 5m; 0 = never)"]
    idle_timeout: Option<String>,
    #[description = "Leave after nobody listened for this long (e.g. 1m; 0 = never)"] alone_timeout: Option<String>,
    #[description = "Volume new sessions start at (0-200)"]
    #[min = 0]
    #[max = 200]
    default_volume: Option<u16>,
    #[description = "Most tracks in the queue"]
    #[min = 1]
    #[max = 10000]
    max_queue: Option<usize>,
    #[description = "Longest track accepted (e.g. 20m; 0 = no limit)"] max_track_duration: Option<
        String,
    >,
    #[description = "Only this role (and admins) may control playback; others vote"]
    dj_role: Option<serenity::Role>,
    #[description = "Remove the DJ role restriction"] clear_dj_role: Option<bool>,
    #[description = "Show the now-playing panel with buttons (off: a line per track)"]
    panel: Option<bool>,
    #[description = "Back to the defaults from the bot's config"] reset: Option<bool>,
) -> Result<(), Error> {
    use crate::settings::Change;
    let bot = ctx.data().clone();
    let guild = ctx.guild_id().expect("guild_only").get();
    let mut changes = Vec::new();
    if reset == Some(true) {
        changes.push(Change::Reset);
    }
    let durations = [
        (
            "idle_timeout",
            idle_timeout,
            Change::IdleTimeout as fn(Duration) -> Change,
        ),
        ("alone_timeout", alone_timeout, Change::AloneTimeout),
        (
            "max_track_duration",
            max_track_duration,
            Change::MaxTrackDuration,
        ),
    ];
    for (field, value, make) in durations {
        if let Some(v) = value {
            match parse_duration(field, &v) {
                Ok(d) => changes.push(make(d)),
                Err(e) => return reply::error(ctx, e).await,
            }
        }
    }
    if let Some(v) = default_volume {
        changes.push(Change::DefaultVolume(v));
    }
    if let Some(n) = max_queue {
        changes.push(Change::MaxQueue(n));
    }
    if let Some(role) = dj_role {
        changes.push(Change::DjRole(Some(role.id.get())));
    }
    if clear_dj_role == Some(true) {
        changes.push(Change::DjRole(None));
    }
    if let Some(on) = panel {
        changes.push(Change::Panel(on));
    }
    let mut now = bot.settings.get(guild);
    for change in &changes {
        match bot.settings.apply(guild, change.clone()).await {
            Ok(s) => now = s,
            Err(e) => return reply::error(ctx, e.to_string()).await,
        }
    }
    if !changes.is_empty() {
        tracing::info!(guild, user = %ctx.author().id, ?changes, "settings changed");
        bot.players.reconfigure(guild).await;
    }
    let dj = now
        .dj_role
        .map(|r| format!("<@&{r}>"))
        .unwrap_or_else(|| "none (everyone controls playback)".into());
    let text = format!(
        "Idle timeout: **{}**\nAlone timeout: **{}**\nDefault volume: **{}%**\nMax queue: **{}** tracks\nMax track length: **{}**\nDJ role: {dj}\nNow-playing panel: **{}**",
        show_duration(now.idle_timeout),
        show_duration(now.alone_timeout),
        now.default_volume,
        now.max_queue,
        show_duration(now.max_track_duration),
        if now.panel { "on" } else { "off" },
    );
    let title = if changes.is_empty() {
        "Settings"
    } else {
        "Settings saved"
    };
    let embed = serenity::CreateEmbed::new()
        .colour(crate::discord::reply::OK)
        .title(title)
        .description(text);
    reply::embed(ctx, embed).await
}
