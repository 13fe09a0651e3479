//! Tests of the Discord emulator itself (tests/support).

mod support;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use serenity::all as sy;
use std::num::NonZeroU64;
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const G: u64 = 700_000_000_000_000_001;
const VC: u64 = 700_000_000_000_000_101;
const VC2: u64 = 700_000_000_000_000_102;
const TC: u64 = 700_000_000_000_000_201;
const ADMIN: u64 = 700_000_000_000_001_001;
const USER: u64 = 700_000_000_000_001_002;

const T: Duration = Duration::from_secs(10);

fn world(emu: &Emulator) {
    emu.add_guild(G, "Test Guild");
    emu.add_voice_channel(G, VC, "Music");
    emu.add_voice_channel(G, VC2, "Other");
    emu.add_text_channel(G, TC, "general");
    emu.add_member(G, ADMIN, "alice", false, true);
    emu.add_member(G, USER, "bob", false, false);
}

fn http(emu: &Emulator) -> std::sync::Arc<sy::Http> {
    let http = sy::HttpBuilder::new(emu.bot_token())
        .proxy(emu.api_base())
        .ratelimiter_disabled(true)
        .application_id(sy::ApplicationId::new(emu.application_id()))
        .build();
    std::sync::Arc::new(http)
}

/// A hand-driven gateway client standing in for the bot; every dispatch it receives is parsed
/// with serenity's `GatewayEvent`.
struct FakeBot {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    events: Vec<(String, sy::Event)>,
    /// Every dispatch frame received, raw.
    raw: Vec<Value>,
    token: String,
}

impl FakeBot {
    async fn connect(emu: &Emulator, intents: u64) -> FakeBot {
        Self::connect_as(emu, intents, None).await
    }

    /// Connects and identifies, as `shard` (`(id, count)`) if given (else without `shard`).
    async fn connect_as(emu: &Emulator, intents: u64, shard: Option<(u32, u32)>) -> FakeBot {
        let mut bot = Self::open(emu).await;
        bot.identify(intents, shard).await;
        bot
    }

    /// Connects and reads HELLO.
    async fn open(emu: &Emulator) -> FakeBot {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("{}/?v=10&encoding=json", emu.gateway_url()))
                .await
                .expect("connect gateway");
        let hello = tokio::time::timeout(T, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let hello: Value = serde_json::from_str(hello.to_text().unwrap()).unwrap();
        assert_eq!(hello["op"], 10);
        let parsed: sy::GatewayEvent = serde_json::from_value(hello).unwrap();
        assert!(matches!(parsed, sy::GatewayEvent::Hello(_)));
        FakeBot {
            ws,
            events: Vec::new(),
            raw: Vec::new(),
            token: emu.bot_token(),
        }
    }

    async fn identify(&mut self, intents: u64, shard: Option<(u32, u32)>) {
        let mut d = json!({"token": format!("Bot {}", self.token), "intents": intents,
            "properties": {"os": "linux", "browser": "test", "device": "test"}});
        if let Some((id, n)) = shard {
            d["shard"] = json!([id, n]);
        }
        self.send(json!({"op": 2, "d": d})).await;
    }

    /// The next frame that is not a close, as JSON (dispatches are recorded like `expect`
    /// records them).
    async fn next_frame(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a gateway frame")
                .expect("gateway closed")
                .expect("gateway error");
            let WsMessage::Text(text) = msg else {
                assert!(!msg.is_close(), "gateway closed: {msg:?}");
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["op"] == 0 {
                self.raw.push(v.clone());
            }
            return v;
        }
    }

    /// The next frame must be the emulator's close; returns its code. Panics on anything
    /// else or on a timeout.
    async fn expect_close(&mut self) -> u16 {
        let msg = tokio::time::timeout(T, self.ws.next())
            .await
            .expect("timed out waiting for the gateway to close");
        match msg {
            Some(Ok(WsMessage::Close(Some(frame)))) => frame.code.into(),
            Some(Ok(WsMessage::Text(t))) => panic!("expected a close, got {t}"),
            Some(Ok(other)) => panic!("expected a close frame with a code, got {other:?}"),
            Some(Err(e)) => panic!("gateway error instead of a close frame: {e}"),
            None => panic!("gateway ended without a close frame"),
        }
    }

    /// The guilds of every dispatch received so far (`guild_id`, or the `id` of GUILD_*).
    fn guilds_seen(&self) -> Vec<u64> {
        self.raw
            .iter()
            .filter_map(|v| {
                let d = &v["d"];
                payloads::id_of(&d["guild_id"]).or_else(|| {
                    v["t"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("GUILD_"))
                        .then(|| payloads::id_of(&d["id"]))
                        .flatten()
                })
            })
            .collect()
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(WsMessage::text(v.to_string())).await.unwrap();
    }

    /// Reads until a dispatch `t` arrives; returns its raw `d` (after checking it parses).
    async fn expect(&mut self, t: &str) -> Value {
        self.expect_where(t, |_| true).await
    }

    /// Reads until a dispatch `t` whose `d` satisfies `pred` arrives; returns that `d`.
    async fn expect_where(&mut self, t: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {t}; got {:?}",
                        self.events.iter().map(|e| &e.0).collect::<Vec<_>>()
                    )
                })
                .expect("gateway closed")
                .expect("gateway error");
            let WsMessage::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_ne!(v["op"], 9, "invalid session (op 9) while waiting for {t}");
            let ev: sy::GatewayEvent = serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("serenity cannot parse gateway frame: {e}\n{v:#}"));
            if let sy::GatewayEvent::Dispatch(_, ev) = ev {
                let name = v["t"].as_str().unwrap().to_string();
                self.raw.push(v.clone());
                if let sy::Event::Unknown(u) = &ev {
                    // serenity falls back to Unknown when the payload does not parse.
                    panic!(
                        "serenity parsed {name} as Unknown (payload invalid): {:#}",
                        u.value
                    );
                }
                self.events.push((name.clone(), ev));
                if name == t && pred(&v["d"]) {
                    return v["d"].clone();
                }
            }
        }
    }

    fn last_event(&self) -> &sy::Event {
        &self.events.last().unwrap().1
    }
}

#[tokio::test]
async fn token_shape() {
    let emu = Emulator::start().await;
    let token = emu.bot_token();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    assert_eq!(parts[1].len(), 6);
    assert!(parts[2].len() >= 27);
    assert!(token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'));
    assert!(sy::validate_token(&token).is_ok());
    // The first part decodes to the bot id.
    assert_eq!(parts[0], "MTMwMDAwMDAwMDAwMDAwMDAwMQ");
}

/// Command registration is held to Discord's rules: each of these is refused whole with
/// 400 50035 naming the field (and is a protocol error: a bot that sent it would have no
/// commands), while a registration that keeps them is accepted.
#[tokio::test]
async fn command_registration_follows_discords_rules() {
    use sy::CommandOptionType as T;
    let emu = Emulator::start().await;
    world(&emu);
    let http = http(&emu);
    let opt = |t, name: &str| sy::CreateCommandOption::new(t, name, "an option");
    let cmd = |name: &str| sy::CreateCommand::new(name).description("a command");
    let broken: Vec<(&str, Vec<sy::CreateCommand>)> = vec![
        ("name", vec![cmd("Play")]),
        (
            "description",
            vec![sy::CreateCommand::new("play").description("x".repeat(101))],
        ),
        (
            "required",
            vec![cmd("play")
                .add_option(opt(T::String, "a"))
                .add_option(opt(T::String, "b").required(true))],
        ),
        (
            "choices",
            vec![
                cmd("play").add_option((0..26).fold(opt(T::String, "pick"), |o, i| {
                    o.add_string_choice(format!("c{i}"), format!("c{i}"))
                })),
            ],
        ),
        ("name", vec![cmd("play"), cmd("play")]),
        (
            "options",
            vec![cmd("queue")
                .add_option(opt(T::SubCommand, "show"))
                .add_option(opt(T::String, "page"))],
        ),
        (
            "choices",
            vec![cmd("loop").add_option(opt(T::Boolean, "on").add_string_choice("yes", "yes"))],
        ),
        (
            "max_length",
            vec![cmd("play").add_option(opt(T::Integer, "n").max_length(10))],
        ),
        ("", (0..101).map(|i| cmd(&format!("c{i}"))).collect()),
    ];
    for (i, (field, cmds)) in broken.into_iter().enumerate() {
        let e = sy::Command::set_global_commands(&http, cmds)
            .await
            .expect_err(&format!("case {i} ({field}) was accepted"));
        let sy::Error::Http(sy::HttpError::UnsuccessfulRequest(r)) = e else {
            panic!("case {i}: {e}");
        };
        assert_eq!(r.status_code.as_u16(), 400, "case {i}");
        assert!(
            r.error.code == 50035 || r.error.code == 50006,
            "case {i}: {:?}",
            r.error
        );
        let errors = emu.protocol_errors();
        assert_eq!(errors.len(), i + 1, "case {i}: {errors:#?}");
        assert!(errors[i].contains(field), "case {i}: {}", errors[i]);
    }
    assert!(emu.registered_commands().is_empty());
    let fine = vec![
        cmd("play").add_option(
            opt(T::String, "query")
                .required(true)
                .set_autocomplete(true),
        ),
        cmd("queue")
            .add_option(
                opt(T::SubCommand, "show").add_sub_option(opt(T::Integer, "page").min_int_value(1)),
            )
            .add_option(opt(T::SubCommand, "clear")),
        cmd("loop").add_option(
            opt(T::String, "mode")
                .add_string_choice("off", "off")
                .add_string_choice("track", "track"),
        ),
    ];
    sy::Command::set_global_commands(&http, fine)
        .await
        .expect("a registration within the rules");
    assert_eq!(emu.registered_commands(), vec!["play", "queue", "loop"]);
}

/// Builder output parses with serenity's model types directly.
#[tokio::test]
async fn fixtures_parse_with_serenity_models() {
    let emu = Emulator::start().await;
    world(&emu);
    // Before the bot connects the voice state just goes into the world (GUILD_CREATE).
    emu.user_join_voice(G, USER, VC).await;

    let ready: sy::Ready = serde_json::from_value(emu.build_ready()).expect("Ready");
    assert_eq!(ready.user.id.get(), emu.bot_user_id());
    assert_eq!(ready.application.id.get(), emu.application_id());
    assert_eq!(ready.guilds.len(), 1);

    let gc_json = emu.build_guild_create(G);
    let gc: sy::GuildCreateEvent =
        serde_json::from_value(gc_json.clone()).expect("GuildCreateEvent");
    let g = gc.guild;
    assert_eq!(g.channels.len(), 3);
    assert_eq!(g.members.len(), 3);
    assert_eq!(g.roles.len(), 3);
    assert_eq!(
        g.voice_states[&sy::UserId::new(USER)].channel_id,
        Some(sy::ChannelId::new(VC))
    );
    let admin = &g.members[&sy::UserId::new(ADMIN)];
    assert!(g.member_permissions(admin).administrator());
    let bob = &g.members[&sy::UserId::new(USER)];
    assert!(!g.member_permissions(bob).administrator());
    assert!(g.member_permissions(bob).connect());

    let partial: sy::PartialGuild = serde_json::from_value(gc_json).expect("PartialGuild");
    assert_eq!(partial.name, "Test Guild");
}

/// A fake bot drives the gateway and uses serenity's own `Http` client against the REST API:
/// every event and every response goes through serenity's parsers.
#[tokio::test]
async fn gateway_and_rest_round_trip_with_serenity() {
    let emu = Emulator::start().await;
    world(&emu);
    let http = http(&emu);

    // --- REST basics
    let me = http.get_current_user().await.expect("current user");
    assert_eq!(me.id.get(), emu.bot_user_id());
    let app = http
        .get_current_application_info()
        .await
        .expect("application info");
    assert_eq!(app.id.get(), emu.application_id());
    let gw = http.get_gateway().await.expect("gateway");
    assert_eq!(gw.url, emu.gateway_url());
    let bot_gw = http.get_bot_gateway().await.expect("bot gateway");
    assert_eq!(bot_gw.shards, 1);

    // --- gateway: IDENTIFY -> READY + GUILD_CREATE
    let intents = (sy::GatewayIntents::non_privileged()).bits();
    let mut bot = FakeBot::connect(&emu, intents).await;
    let ready = bot.expect("READY").await;
    assert_eq!(ready["user"]["id"], emu.bot_user_id().to_string());
    bot.expect("GUILD_CREATE").await;
    match bot.last_event() {
        sy::Event::GuildCreate(gc) => {
            assert_eq!(gc.guild.channels.len(), 3);
            // No GUILD_MEMBERS intent: only the bot (and voice members) are listed.
            assert_eq!(gc.guild.members.len(), 1);
        }
        other => panic!("{other:?}"),
    }

    // --- command registration (poise-like payload) through serenity's builder
    let cmds = vec![
        sy::CreateCommand::new("play")
            .description("Play a song")
            .add_option(
                sy::CreateCommandOption::new(
                    sy::CommandOptionType::String,
                    "query",
                    "URL or search",
                )
                .required(true)
                .set_autocomplete(true),
            ),
        sy::CreateCommand::new("skip").description("Skip"),
        sy::CreateCommand::new("queue")
            .description("Queue")
            .add_option(sy::CreateCommandOption::new(
                sy::CommandOptionType::SubCommand,
                "show",
                "Show the queue",
            )),
    ];
    let echoed = sy::Command::set_global_commands(&http, cmds)
        .await
        .expect("register commands");
    assert_eq!(echoed.len(), 3);
    assert_eq!(emu.registered_commands(), vec!["play", "skip", "queue"]);
    let guild_cmds = sy::GuildId::new(G)
        .set_commands(
            &http,
            vec![sy::CreateCommand::new("debug").description("Debug")],
        )
        .await
        .expect("guild commands");
    assert_eq!(guild_cmds[0].guild_id, Some(sy::GuildId::new(G)));
    emu.wait_ready(T).await;

    // --- voice: op 4 with numeric ids (like songbird) -> VOICE_STATE_UPDATE + VOICE_SERVER_UPDATE
    bot.send(json!({"op": 4, "d": {"guild_id": G, "channel_id": VC, "self_mute": false, "self_deaf": true}})).await;
    let vs = bot.expect("VOICE_STATE_UPDATE").await;
    assert_eq!(vs["self_deaf"], true);
    match bot.last_event() {
        sy::Event::VoiceStateUpdate(e) => {
            assert_eq!(e.voice_state.user_id.get(), emu.bot_user_id());
            assert_eq!(e.voice_state.guild_id, Some(sy::GuildId::new(G)));
            assert_eq!(e.voice_state.channel_id, Some(sy::ChannelId::new(VC)));
            assert!(e.voice_state.member.is_some());
        }
        other => panic!("{other:?}"),
    }
    let vsu = bot.expect("VOICE_SERVER_UPDATE").await;
    assert_eq!(vsu["endpoint"], emu.voice_endpoint());
    assert!(matches!(bot.last_event(), sy::Event::VoiceServerUpdate(_)));
    assert_eq!(emu.bot_voice_channel(G), Some(VC));
    // String ids work too; leaving echoes self_deaf.
    bot.send(json!({"op": 4, "d": {"guild_id": G.to_string(), "channel_id": null, "self_mute": false, "self_deaf": true}})).await;
    let vs = bot.expect("VOICE_STATE_UPDATE").await;
    assert!(vs["channel_id"].is_null());
    assert_eq!(vs["self_deaf"], true);
    emu.wait_bot_voice(G, None, T).await;
    assert_eq!(emu.voice_state_updates(G), vec![Some(VC), None]);

    // --- heartbeat
    bot.send(json!({"op": 1, "d": 3})).await;
    let ack = tokio::time::timeout(T, bot.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ack: Value = serde_json::from_str(ack.to_text().unwrap()).unwrap();
    assert_eq!(ack["op"], 11);

    // --- a user joins voice
    emu.user_join_voice(G, USER, VC).await;
    let vs = bot.expect("VOICE_STATE_UPDATE").await;
    assert_eq!(vs["user_id"], USER.to_string());
    assert_eq!(vs["member"]["user"]["username"], "bob");

    // --- slash command -> type 4 reply with embed and buttons
    let ix = emu
        .command(
            G,
            TC,
            USER,
            "play",
            json!([{"name": "query", "type": 3, "value": "http://x/a.wav"}]),
        )
        .await;
    bot.expect("INTERACTION_CREATE").await;
    let sy::Event::InteractionCreate(ev) = bot.last_event().clone() else {
        panic!()
    };
    let sy::Interaction::Command(cmd) = ev.interaction else {
        panic!("not a command")
    };
    assert_eq!(cmd.data.name, "play");
    assert_eq!(
        cmd.data.id, echoed[0].id,
        "interaction carries the registered command id"
    );
    assert_eq!(
        cmd.member.as_ref().unwrap().permissions.unwrap().bits(),
        payloads::MEMBER_PERMISSIONS
    );
    assert!(cmd.app_permissions.unwrap().speak());
    match &cmd.data.options[0].value {
        sy::CommandDataOptionValue::String(s) => assert_eq!(s, "http://x/a.wav"),
        other => panic!("{other:?}"),
    }
    let embed = sy::CreateEmbed::new()
        .title("Now playing")
        .description("a.wav")
        .field("Duration", "0:03", true)
        .footer(sy::CreateEmbedFooter::new("requested by bob"))
        .author(sy::CreateEmbedAuthor::new("encore"));
    let row = sy::CreateActionRow::Buttons(vec![
        sy::CreateButton::new("pause").label("Pause"),
        sy::CreateButton::new("skip")
            .label("Skip")
            .style(sy::ButtonStyle::Danger),
    ]);
    cmd.create_response(
        &http,
        sy::CreateInteractionResponse::Message(
            sy::CreateInteractionResponseMessage::new()
                .content("Queued")
                .embed(embed)
                .components(vec![row]),
        ),
    )
    .await
    .expect("callback");
    let reply = ix.response(T).await;
    assert_eq!(reply.content, "Queued");
    assert!(!reply.ephemeral);
    assert_eq!(
        reply.text(),
        "Queued\nencore\nNow playing\na.wav\nDuration\n0:03\nrequested by bob"
    );
    assert_eq!(reply.custom_ids(), vec!["pause", "skip"]);
    // Second acknowledgement is refused like Discord does.
    let again = cmd
        .create_response(
            &http,
            sy::CreateInteractionResponse::Message(
                sy::CreateInteractionResponseMessage::new().content("x"),
            ),
        )
        .await;
    assert!(again.is_err());
    assert_eq!(ix.errors().len(), 1);
    // @original round trips through serenity's Message parser.
    let original = cmd.get_response(&http).await.expect("get original");
    assert_eq!(original.content, "Queued");
    assert_eq!(original.embeds[0].fields[0].name, "Duration");
    let edited = cmd
        .edit_response(
            &http,
            sy::EditInteractionResponse::new().content("Queued (edited)"),
        )
        .await
        .expect("edit");
    assert_eq!(edited.content, "Queued (edited)");
    let fu = cmd
        .create_followup(
            &http,
            sy::CreateInteractionResponseFollowup::new()
                .content("follow")
                .ephemeral(true),
        )
        .await
        .expect("followup");
    assert_eq!(fu.content, "follow");
    let all = ix.replies();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].source, ReplySource::EditOriginal);
    assert!(all[2].ephemeral);

    // --- button press -> update message (type 7)
    let press = emu.component(&reply, USER, "pause").await;
    bot.expect("INTERACTION_CREATE").await;
    let sy::Event::InteractionCreate(ev) = bot.last_event().clone() else {
        panic!()
    };
    let sy::Interaction::Component(comp) = ev.interaction else {
        panic!("not a component")
    };
    assert_eq!(comp.data.custom_id, "pause");
    assert_eq!(comp.message.id.get(), reply.id);
    comp.create_response(
        &http,
        sy::CreateInteractionResponse::UpdateMessage(
            sy::CreateInteractionResponseMessage::new().content("Paused"),
        ),
    )
    .await
    .expect("update");
    let upd = press.response(T).await;
    assert_eq!(upd.id, reply.id);
    assert_eq!(upd.content, "Paused");
    assert_eq!(upd.embeds.len(), 1, "update without embeds keeps them");

    // --- deferred ephemeral command -> first follow-up becomes the original (ephemeral)
    let ix2 = emu.command(G, TC, ADMIN, "skip", json!([])).await;
    bot.expect("INTERACTION_CREATE").await;
    let sy::Event::InteractionCreate(ev) = bot.last_event().clone() else {
        panic!()
    };
    let sy::Interaction::Command(cmd2) = ev.interaction else {
        panic!()
    };
    assert_eq!(
        cmd2.member.as_ref().unwrap().permissions.unwrap(),
        sy::Permissions::all()
    );
    cmd2.defer_ephemeral(&http).await.expect("defer");
    let fu = cmd2
        .create_followup(
            &http,
            sy::CreateInteractionResponseFollowup::new().content("Skipped"),
        )
        .await
        .expect("followup after defer");
    let r2 = ix2.response(T).await;
    assert_eq!(r2.content, "Skipped");
    assert!(r2.ephemeral, "inherits the deferral's ephemeral flag");
    assert_eq!(fu.id.get(), r2.id);

    // --- autocomplete (type 4 -> 8)
    let ac = emu
        .autocomplete(
            G,
            TC,
            USER,
            "play",
            json!([{"name": "query", "type": 3, "value": "ab"}]),
        )
        .await;
    bot.expect("INTERACTION_CREATE").await;
    let sy::Event::InteractionCreate(ev) = bot.last_event().clone() else {
        panic!()
    };
    let sy::Interaction::Autocomplete(acx) = ev.interaction else {
        panic!("not autocomplete")
    };
    let focused = acx.data.autocomplete().expect("focused option");
    assert_eq!(focused.value, "ab");
    acx.create_response(
        &http,
        sy::CreateInteractionResponse::Autocomplete(
            sy::CreateAutocompleteResponse::new()
                .add_string_choice("abba", "abba")
                .add_string_choice("abc", "abc"),
        ),
    )
    .await
    .expect("autocomplete");
    let choices = ac.autocomplete_choices(T).await;
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["name"], "abba");

    // --- channel messages through serenity
    let sent = sy::ChannelId::new(TC)
        .send_message(
            &http,
            sy::CreateMessage::new()
                .content("hello")
                .embed(sy::CreateEmbed::new().title("T")),
        )
        .await
        .expect("send message");
    assert_eq!(sent.channel_id.get(), TC);
    let edited = sy::ChannelId::new(TC)
        .edit_message(
            &http,
            sent.id,
            sy::EditMessage::new().content("hello again"),
        )
        .await
        .expect("edit message");
    assert_eq!(edited.content, "hello again");
    let m = emu
        .wait_message(TC, |r| r.text().contains("hello again"), T)
        .await;
    assert_eq!(m.id, sent.id.get());
    assert_eq!(emu.messages(TC).len(), 1);
    assert_eq!(emu.message_history(TC).len(), 2);
    // Discord's limits are enforced.
    // (serenity's builders check lengths client-side; the raw route reaches the emulator.)
    let too_long = http
        .send_message(
            sy::ChannelId::new(TC),
            vec![],
            &json!({"content": "x".repeat(2001)}),
        )
        .await;
    match too_long {
        Err(sy::Error::Http(sy::HttpError::UnsuccessfulRequest(e))) => {
            assert_eq!(e.status_code.as_u16(), 400);
            assert_eq!(e.error.code, 50035);
            assert_eq!(e.error.errors[0].path, "content");
        }
        other => panic!("{other:?}"),
    }
    let empty = http
        .send_message(sy::ChannelId::new(TC), vec![], &json!({"content": ""}))
        .await;
    assert!(empty.is_err());
    assert!(emu.protocol_errors().iter().any(|e| e.contains("2000")));

    // --- misc REST parsed by serenity
    let ch = http
        .get_channel(sy::ChannelId::new(VC))
        .await
        .expect("channel");
    assert_eq!(ch.guild().unwrap().kind, sy::ChannelType::Voice);
    let pg = http.get_guild(sy::GuildId::new(G)).await.expect("guild");
    assert_eq!(pg.id.get(), G);
    let member = http
        .get_member(sy::GuildId::new(G), sy::UserId::new(USER))
        .await
        .expect("member");
    assert_eq!(member.user.name, "bob");
    let unknown = http.get_guild_roles(sy::GuildId::new(G)).await;
    assert!(unknown.is_ok());
    let bans = http.get_bans(sy::GuildId::new(G), None, None).await;
    assert!(bans.is_err());
    assert!(
        emu.unhandled_requests().iter().any(|r| r.contains("/bans")),
        "{:?}",
        emu.unhandled_requests()
    );

    // --- moderator moves the bot, channel deletion, guild removal
    emu.move_bot(G, Some(VC2)).await;
    let vs = bot.expect("VOICE_STATE_UPDATE").await;
    assert_eq!(vs["channel_id"], VC2.to_string());
    bot.expect("VOICE_SERVER_UPDATE").await;
    assert_eq!(emu.bot_voice_channel(G), Some(VC2));
    emu.delete_channel(G, VC2).await;
    let vs = bot.expect("VOICE_STATE_UPDATE").await;
    assert!(vs["channel_id"].is_null());
    bot.expect("CHANNEL_DELETE").await;
    assert!(matches!(bot.last_event(), sy::Event::ChannelDelete(_)));
    assert_eq!(emu.bot_voice_channel(G), None);
    emu.add_text_channel(G, VC2 + 1000, "new");
    bot.expect("CHANNEL_CREATE").await;
    emu.remove_guild(G).await;
    bot.expect("GUILD_DELETE").await;
    match bot.last_event() {
        sy::Event::GuildDelete(e) => assert_eq!(e.guild.id.get(), G),
        other => panic!("{other:?}"),
    }
    emu.add_guild(G + 1, "Second");
    bot.expect("GUILD_CREATE").await;

    let unexpected: Vec<String> = emu
        .protocol_errors()
        .into_iter()
        .filter(|e| {
            !e.contains("2000") && !e.contains("acknowledged") && !e.contains("empty message")
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

#[tokio::test]
async fn gateway_resume_and_intent_filtering() {
    let emu = Emulator::start().await;
    world(&emu);
    // Without GUILD_VOICE_STATES the bot gets no voice state updates (as on Discord).
    let mut bot = FakeBot::connect(&emu, sy::GatewayIntents::GUILDS.bits()).await;
    let ready = bot.expect("READY").await;
    let session = ready["session_id"].as_str().unwrap().to_string();
    bot.expect("GUILD_CREATE").await;
    emu.user_join_voice(G, USER, VC).await;
    assert!(emu
        .dropped_dispatches()
        .iter()
        .any(|d| d.starts_with("VOICE_STATE_UPDATE")));

    // Resume on a new connection continues the session.
    drop(bot);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/?v=10", emu.gateway_url()))
        .await
        .unwrap();
    let _hello = ws.next().await.unwrap().unwrap();
    ws.send(WsMessage::text(
        json!({"op": 6, "d": {"token": emu.bot_token(), "session_id": session, "seq": 2}})
            .to_string(),
    ))
    .await
    .unwrap();
    let resumed = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let resumed: Value = serde_json::from_str(resumed.to_text().unwrap()).unwrap();
    assert_eq!(resumed["t"], "RESUMED");
    let ev: sy::GatewayEvent = serde_json::from_value(resumed).unwrap();
    assert!(matches!(
        ev,
        sy::GatewayEvent::Dispatch(_, sy::Event::Resumed(_))
    ));
    // Unknown session -> invalid session (op 9).
    let (mut ws2, _) = tokio_tungstenite::connect_async(format!("{}/?v=10", emu.gateway_url()))
        .await
        .unwrap();
    let _hello = ws2.next().await.unwrap().unwrap();
    ws2.send(WsMessage::text(
        json!({"op": 6, "d": {"token": emu.bot_token(), "session_id": "nope", "seq": 1}})
            .to_string(),
    ))
    .await
    .unwrap();
    let inv = tokio::time::timeout(T, ws2.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let inv: Value = serde_json::from_str(inv.to_text().unwrap()).unwrap();
    assert_eq!(inv["op"], 9);
    assert_eq!(emu.gateway_connections(), 3);
    // A resume continues the session it resumes: not a second session of the shard.
    assert_eq!(emu.shard_overlaps(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Sharding: /gateway/bot figures, IDENTIFY's `shard`, routing by shard, the identify rate limit.
// ---------------------------------------------------------------------------------------------

/// The guild ids of READY's `guilds`, sorted.
fn ready_guilds(ready: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = ready["guilds"]
        .as_array()
        .expect("READY guilds")
        .iter()
        .map(|g| payloads::id_of(&g["id"]).unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

/// The shard pairs of the accepted IDENTIFYs, in order.
fn identified_shards(emu: &Emulator) -> Vec<(u32, u32)> {
    emu.identifies()
        .iter()
        .map(|(_, id, n)| (*id, *n))
        .collect()
}

/// `GET /gateway/bot`: the recommended shard count follows the guild count (or the test's
/// override), and the session start limit counts the sessions started.
#[tokio::test]
async fn gateway_bot_recommends_shards_and_counts_session_starts() {
    let emu = Emulator::start().await;
    let http = http(&emu);
    let gw = http.get_bot_gateway().await.expect("bot gateway");
    assert_eq!(gw.url, emu.gateway_url());
    assert_eq!(gw.shards, 1, "no guilds still need one shard");
    let limit = &gw.session_start_limit;
    assert_eq!(
        (limit.total, limit.remaining, limit.max_concurrency),
        (1000, 1000, 1)
    );
    assert!(
        limit.reset_after > 0 && limit.reset_after <= 24 * 60 * 60 * 1000,
        "reset_after {}",
        limit.reset_after
    );

    // An accepted IDENTIFY starts a session; one refused for coming too early does not.
    let mut bot = FakeBot::connect(&emu, 0).await;
    bot.expect("READY").await;
    let mut early = FakeBot::connect(&emu, 0).await;
    assert_eq!(early.next_frame().await["op"], 9);
    let gw = http.get_bot_gateway().await.unwrap();
    assert_eq!(gw.session_start_limit.remaining, 999);

    // ceil(guilds / guilds_per_shard)
    emu.set_guilds_per_shard(2);
    for i in 0..5 {
        emu.add_guild(G + i, "Guild");
    }
    assert_eq!(http.get_bot_gateway().await.unwrap().shards, 3);
    assert_eq!(emu.recommended_shards(), 3);
    emu.set_guilds_per_shard(5);
    assert_eq!(http.get_bot_gateway().await.unwrap().shards, 1);

    // The test's figures win.
    emu.set_recommended_shards(8);
    emu.set_max_concurrency(16);
    let gw = http.get_bot_gateway().await.unwrap();
    assert_eq!(gw.shards, 8);
    assert_eq!(gw.session_start_limit.max_concurrency, 16);
    assert_eq!(gw.session_start_limit.remaining, 999);
}

/// Two shards each get READY and GUILD_CREATE for their own guilds only, and every event
/// about a guild (voice states, voice servers, members, channels, interactions, guilds
/// created and deleted) reaches only the shard that owns it; op 4 on the wrong shard is a
/// protocol error.
#[tokio::test]
async fn each_shard_gets_only_its_guilds_and_their_events() {
    let emu = Emulator::start().await;
    let a = [
        emu.add_guild_on_shard(0, 2).await,
        emu.add_guild_on_shard(0, 2).await,
    ];
    let b = [
        emu.add_guild_on_shard(1, 2).await,
        emu.add_guild_on_shard(1, 2).await,
    ];
    for g in &a {
        assert_eq!(guild_on_shard(g.id, 2), 0);
    }
    for g in &b {
        assert_eq!(guild_on_shard(g.id, 2), 1);
    }
    let http = http(&emu);
    sy::Command::set_global_commands(
        &http,
        vec![sy::CreateCommand::new("ping").description("Ping")],
    )
    .await
    .expect("register");
    // Two buckets: both shards may identify at once.
    emu.set_max_concurrency(2);
    let intents = (sy::GatewayIntents::non_privileged() | sy::GatewayIntents::GUILD_MEMBERS).bits();
    let mut s0 = FakeBot::connect_as(&emu, intents, Some((0, 2))).await;
    let ready0 = s0.expect("READY").await;
    let mut s1 = FakeBot::connect_as(&emu, intents, Some((1, 2))).await;
    let ready1 = s1.expect("READY").await;
    assert_eq!(ready0["shard"], json!([0, 2]));
    assert_eq!(ready1["shard"], json!([1, 2]));
    assert_eq!(
        ready_guilds(&ready0),
        sorted(a.iter().map(|g| g.id).collect())
    );
    assert_eq!(
        ready_guilds(&ready1),
        sorted(b.iter().map(|g| g.id).collect())
    );
    for (bot, own) in [(&mut s0, &a), (&mut s1, &b)] {
        let mut created = Vec::new();
        for _ in 0..2 {
            created.push(payloads::id_of(&bot.expect("GUILD_CREATE").await["id"]).unwrap());
        }
        assert_eq!(sorted(created), sorted(own.iter().map(|g| g.id).collect()));
    }
    assert_eq!(emu.connected_shards(), vec![(0, 2), (1, 2)]);
    assert_eq!(identified_shards(&emu), vec![(0, 2), (1, 2)]);

    // A user's voice state, a new member, an interaction: each to its guild's shard.
    let is_guild = |g: u64| move |d: &Value| payloads::id_of(&d["guild_id"]) == Some(g);
    emu.user_leave_voice(b[0].id, b[0].member).await;
    emu.user_leave_voice(a[0].id, a[0].member).await;
    s0.expect_where("VOICE_STATE_UPDATE", is_guild(a[0].id))
        .await;
    s1.expect_where("VOICE_STATE_UPDATE", is_guild(b[0].id))
        .await;
    let newcomer = 700_000_000_000_009_001;
    emu.add_member(a[1].id, newcomer, "newcomer", false, false);
    s0.expect_where("GUILD_MEMBER_ADD", is_guild(a[1].id)).await;
    let ix = emu
        .command(b[1].id, b[1].text, b[1].member, "ping", json!([]))
        .await;
    let d = s1.expect("INTERACTION_CREATE").await;
    assert_eq!(payloads::id_of(&d["id"]), Some(ix.id));

    // op 4 on a shard that does not own the guild: ignored, and a protocol error.
    s1.send(json!({"op": 4, "d": {"guild_id": a[0].id.to_string(), "channel_id": a[0].voice.to_string(), "self_mute": false, "self_deaf": true}})).await;
    emu.wait_for("the misrouted op 4 to be reported", T, |e| {
        e.protocol_errors()
            .iter()
            .any(|p| p.contains("does not own"))
    })
    .await;
    assert_eq!(emu.bot_voice_channel(a[0].id), None);
    assert!(emu.voice_state_updates(a[0].id).is_empty());
    // On the owning shard it is answered there.
    s0.send(json!({"op": 4, "d": {"guild_id": a[0].id.to_string(), "channel_id": a[0].voice.to_string(), "self_mute": false, "self_deaf": true}})).await;
    s0.expect_where("VOICE_STATE_UPDATE", is_guild(a[0].id))
        .await;
    s0.expect_where("VOICE_SERVER_UPDATE", is_guild(a[0].id))
        .await;
    assert_eq!(emu.bot_voice_channel(a[0].id), Some(a[0].voice));

    // Guilds joined and left go to their shard too.
    let late = emu.add_guild_on_shard(1, 2).await;
    let d = s1.expect("GUILD_CREATE").await;
    assert_eq!(payloads::id_of(&d["id"]), Some(late.id));
    emu.remove_guild(a[1].id).await;
    let d = s0.expect("GUILD_DELETE").await;
    assert_eq!(payloads::id_of(&d["id"]), Some(a[1].id));

    // Barriers: a channel on shard 0, then 1, then 0 again. Each shard reads up to its
    // last one, so anything routed to the wrong shard before it has been read.
    let (c1, c2, c3) = (
        700_000_000_000_008_001,
        700_000_000_000_008_002,
        700_000_000_000_008_003,
    );
    emu.add_text_channel(a[0].id, c1, "one");
    emu.add_text_channel(b[0].id, c2, "two");
    emu.add_text_channel(a[0].id, c3, "three");
    let is_channel = |c: u64| move |d: &Value| payloads::id_of(&d["id"]) == Some(c);
    s0.expect_where("CHANNEL_CREATE", is_channel(c3)).await;
    s1.expect_where("CHANNEL_CREATE", is_channel(c2)).await;
    let strays0: Vec<u64> = s0
        .guilds_seen()
        .into_iter()
        .filter(|g| guild_on_shard(*g, 2) != 0)
        .collect();
    let strays1: Vec<u64> = s1
        .guilds_seen()
        .into_iter()
        .filter(|g| guild_on_shard(*g, 2) != 1)
        .collect();
    assert!(
        strays0.is_empty(),
        "shard 0 got events of guilds {strays0:?}"
    );
    assert!(
        strays1.is_empty(),
        "shard 1 got events of guilds {strays1:?}"
    );
    assert!(s1.guilds_seen().contains(&late.id));
    let errors = emu.protocol_errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
}

/// IDENTIFY with a shard that cannot exist is closed with 4010 (Invalid shard).
#[tokio::test]
async fn an_invalid_shard_is_closed_with_4010() {
    let emu = Emulator::start().await;
    world(&emu);
    for shard in [(2, 2), (0, 0), (5, 3)] {
        let mut bot = FakeBot::connect_as(&emu, 0, Some(shard)).await;
        assert_eq!(bot.expect_close().await, 4010, "shard {shard:?}");
    }
    assert!(emu.identifies().is_empty());
    assert!(emu.connected_shards().is_empty());
    assert_eq!(
        emu.protocol_errors()
            .iter()
            .filter(|e| e.contains("invalid shard"))
            .count(),
        3
    );
    // The same bot with a valid pair is welcome.
    let mut bot = FakeBot::connect_as(&emu, 0, Some((1, 2))).await;
    assert_eq!(bot.expect("READY").await["shard"], json!([1, 2]));
    assert_eq!(emu.connected_shards(), vec![(1, 2)]);
}

/// IDENTIFY as a shard that would hold more than `guilds_per_shard` guilds is closed with
/// 4011 (Sharding required); enough shards are let in.
#[tokio::test]
async fn too_many_guilds_on_a_shard_is_closed_with_4011() {
    let emu = Emulator::start().await;
    emu.set_guilds_per_shard(2);
    let mut ids = Vec::new();
    for shard in [0, 0, 1] {
        ids.push(emu.add_guild_on_shard(shard, 2).await.id);
    }
    assert_eq!(emu.recommended_shards(), 2);
    let mut unsharded = FakeBot::connect(&emu, 0).await;
    assert_eq!(unsharded.expect_close().await, 4011);
    let mut one_of_one = FakeBot::connect_as(&emu, 0, Some((0, 1))).await;
    assert_eq!(one_of_one.expect_close().await, 4011);
    assert!(emu.identifies().is_empty());
    assert!(emu
        .protocol_errors()
        .iter()
        .all(|e| e.contains("Sharding required")));

    let mut s0 = FakeBot::connect_as(&emu, 0, Some((0, 2))).await;
    let ready = s0.expect("READY").await;
    assert_eq!(ready_guilds(&ready), sorted(ids[..2].to_vec()));
    assert_eq!(emu.connected_shards(), vec![(0, 2)]);
}

/// One IDENTIFY per bucket (`shard_id % max_concurrency`) per identify interval: an earlier
/// one in the same bucket gets op 9 (`d: false`), one in another bucket does not, and the
/// refused connection may identify once the interval has passed.
#[tokio::test]
async fn identify_rate_limit_is_per_bucket() {
    let emu = Emulator::start().await;
    emu.set_max_concurrency(2);
    emu.set_identify_interval(Duration::from_secs(60));
    let mut s0 = FakeBot::connect_as(&emu, 0, Some((0, 2))).await;
    s0.expect("READY").await;
    // Bucket 1: not limited by shard 0's IDENTIFY.
    let mut s1 = FakeBot::connect_as(&emu, 0, Some((1, 2))).await;
    s1.expect("READY").await;
    assert_eq!(emu.refused_identifies(), 0);
    // Bucket 0 again, within the interval.
    let mut again = FakeBot::connect_as(&emu, 0, Some((0, 2))).await;
    let inv = again.next_frame().await;
    assert_eq!(
        (inv["op"].clone(), inv["d"].clone()),
        (json!(9), json!(false))
    );
    let parsed: sy::GatewayEvent = serde_json::from_value(inv).unwrap();
    assert!(matches!(parsed, sy::GatewayEvent::InvalidateSession(false)));
    assert_eq!(emu.refused_identifies(), 1);
    // With one bucket, shard 1 shares shard 0's.
    emu.set_max_concurrency(1);
    let mut s1_again = FakeBot::connect_as(&emu, 0, Some((1, 2))).await;
    assert_eq!(s1_again.next_frame().await["op"], 9);
    assert_eq!(emu.refused_identifies(), 2);
    assert_eq!(identified_shards(&emu), vec![(0, 2), (1, 2)]);
    assert_eq!(emu.connected_shards(), vec![(0, 2), (1, 2)]);

    // Once the interval has passed since the bucket's last IDENTIFY, the refused
    // connection identifies.
    let interval = Duration::from_millis(300);
    emu.set_identify_interval(interval);
    let last = emu.identifies().last().unwrap().0;
    tokio::time::sleep_until((last + interval).into()).await;
    again.identify(0, Some((0, 2))).await;
    assert_eq!(again.expect("READY").await["shard"], json!([0, 2]));
    let accepted = emu.identifies();
    assert_eq!(accepted.len(), 3);
    assert!(accepted[2].0.duration_since(accepted[1].0) >= interval);
    assert_eq!(emu.refused_identifies(), 2);
    assert_eq!(emu.connected_shards(), vec![(0, 2), (1, 2)]);
    // s0 never went away: shard 0 had two sessions at once, which a bot must never do.
    let overlaps = emu.shard_overlaps();
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert!(overlaps[0].starts_with("shard [0, 2]"), "{overlaps:?}");
}

/// The voice leg end to end: a songbird Driver connects to the emulator's TLS voice server and
/// plays a 440 Hz sine; the emulator decrypts and decodes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn songbird_driver_audio_is_received_and_decoded() {
    let emu = Emulator::start().await;
    world(&emu);
    let nz = |x| NonZeroU64::new(x).unwrap();
    let mut driver = songbird::Driver::new(songbird_config());
    let info = songbird::ConnectionInfo {
        channel_id: nz(VC).into(),
        endpoint: emu.voice_endpoint(),
        guild_id: nz(G).into(),
        session_id: "raw-driver-session".into(),
        token: "raw-driver-token".into(),
        user_id: nz(emu.bot_user_id()).into(),
    };
    tokio::time::timeout(T, driver.connect(info))
        .await
        .expect("voice connect timed out")
        .unwrap_or_else(|e| {
            panic!(
                "voice connect failed: {e:?}\nvoice log: {:#?}\nvoice errors: {:#?}",
                emu.voice_log(),
                emu.voice_errors()
            )
        });
    assert_eq!(emu.voice_connections(G), 1);
    emu.wait_voice_connected(G, T).await;

    // 1.5 s of 440 Hz stereo sine, f32 LE interleaved.
    let mut bytes = Vec::new();
    for i in 0..(48_000 * 3 / 2) {
        let s = (i as f32 * 440.0 * 2.0 * std::f32::consts::PI / 48_000.0).sin() * 0.5;
        for _ in 0..2 {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
    }
    let input: songbird::input::Input =
        songbird::input::RawAdapter::new(std::io::Cursor::new(bytes), 48_000, 2).into();
    driver.play_input(input);

    emu.wait_audio_frames(G, 60, Duration::from_secs(15)).await;
    // Let the track finish (bounded) so the whole tone is in.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline && non_silent(&emu.audio(G)).len() < 72 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let frames = emu.audio(G);
    let loud = non_silent(&frames);
    assert!(
        loud.len() >= 40,
        "only {} non-silent frames of {}",
        loud.len(),
        frames.len()
    );
    let f = dominant_frequency(&loud);
    assert!((f - 440.0).abs() <= 10.0, "dominant frequency {f}");
    assert!(rms(&loud) > 0.1, "rms {}", rms(&loud));
    assert_contiguous(&frames);
    assert!(emu.voice_errors().is_empty(), "{:#?}", emu.voice_errors());

    // The emulator can kick the session (4014): songbird does not resume it.
    emu.close_voice(G, 4014).await;
    assert!(emu
        .voice_log()
        .iter()
        .any(|l| l.contains("closes with 4014")));
    driver.leave();
}

/// A 4015 close is resumable: songbird reconnects with RESUME and audio continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn songbird_driver_resumes_after_4015() {
    let emu = Emulator::start().await;
    world(&emu);
    let nz = |x| NonZeroU64::new(x).unwrap();
    let mut driver = songbird::Driver::new(songbird_config());
    let info = songbird::ConnectionInfo {
        channel_id: nz(VC).into(),
        endpoint: emu.voice_endpoint(),
        guild_id: nz(G).into(),
        session_id: "s".into(),
        token: "t".into(),
        user_id: nz(emu.bot_user_id()).into(),
    };
    tokio::time::timeout(T, driver.connect(info))
        .await
        .unwrap()
        .unwrap();
    emu.close_voice(G, 4015).await;
    let deadline = std::time::Instant::now() + T;
    while emu.voice_resumes(G) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(emu.voice_resumes(G), 1, "voice log: {:#?}", emu.voice_log());
    assert_eq!(emu.voice_connections(G), 1);
    driver.leave();
}

#[test]
fn rtp_decrypt_handles_header_extensions() {
    let key = [9u8; 32];
    let opus = [0xF8u8, 0xFF, 0xFE];
    // Plain header.
    let header = [0x80, 0x78, 0, 7, 0, 0, 3, 0xC0, 0, 0, 0x30, 0x39];
    let pkt = voice::encrypt_rtp(&header, &[], &opus, &key, 5);
    let (seq, ts, out) = voice::decrypt_rtp(&pkt, &key).unwrap();
    assert_eq!((seq, ts, out.as_slice()), (7, 960, &opus[..]));
    // X bit: the 4-byte preamble is authenticated in the clear, the extension body is encrypted.
    let mut header_x = header.to_vec();
    header_x[0] |= 0x10;
    header_x.extend_from_slice(&[0xBE, 0xDE, 0, 1]);
    let pkt = voice::encrypt_rtp(&header_x, &[0x10, 0xAA, 0, 0], &opus, &key, 6);
    let (_, _, out) = voice::decrypt_rtp(&pkt, &key).unwrap();
    assert_eq!(out, opus);
    // Tampering fails authentication.
    let mut bad = pkt.clone();
    bad[3] ^= 1;
    assert!(voice::decrypt_rtp(&bad, &key).is_err());
}

#[tokio::test]
async fn file_server_ranges_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    write_tone_wav(&wav, 440.0, 0.5, 0.5);
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(bytes.len(), 44 + 24_000 * 4);
    assert_eq!(&bytes[..4], b"RIFF");
    let fs = FileServer::start(dir.path()).await;
    let client = reqwest::Client::new();

    let full = client.get(fs.url("tone.wav")).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-type"], "audio/wav");
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let part = client
        .get(fs.url("tone.wav"))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", bytes.len())
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[100..200]);

    let tail = client
        .get(fs.url("tone.wav"))
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.headers()["content-length"],
        (bytes.len() - 1000).to_string()
    );
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &bytes[1000..]);

    let bad = client
        .get(fs.url("tone.wav"))
        .header("Range", format!("bytes={}-", bytes.len() + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 416);

    let head = client.head(fs.url("tone.wav")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], bytes.len().to_string());

    let missing = client.get(fs.url("missing.wav")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        fs.requests(),
        6,
        "keep-alive connections are reused and every request counted"
    );
    assert_eq!(fs.request_log()[1].range.as_deref(), Some("bytes=100-199"));
}

#[tokio::test]
async fn ffmpeg_fixtures() {
    // Never skipped: without ffmpeg the fixtures other tests rely on cannot be made.
    assert!(
        std::process::Command::new("ffmpeg")
            .arg("-version")
            .output()
            .is_ok(),
        "ffmpeg is not installed: run scripts/deps (or apt-get install ffmpeg)"
    );
    let dir = tempfile::tempdir().unwrap();
    let webm = dir.path().join("tone.webm");
    write_tone_webm(&webm, 660.0, 1.0);
    let data = std::fs::read(&webm).unwrap();
    assert_eq!(&data[..4], &[0x1A, 0x45, 0xDF, 0xA3], "EBML magic");
    let two = dir.path().join("two.wav");
    write_two_tone_wav(&two, 440.0, 880.0, 0.5);
    assert_eq!(std::fs::metadata(&two).unwrap().len(), 44 + 48_000 * 4);
}

#[test]
fn dominant_frequency_of_synthetic_frames() {
    for f in [440.0f32, 660.0, 100.0, 1234.0] {
        let frames = synth_frames(f, 50, 0.5);
        let d = dominant_frequency(&frames);
        assert!((d - f).abs() <= 2.0, "{f} Hz detected as {d}");
        assert_contiguous(&frames);
    }
    let a = synth_frames(440.0, 50, 0.5);
    assert!((rms(&a) - 0.5 / 2f32.sqrt()).abs() < 0.01);
    assert!(tone_strength(&a, 440.0) > 0.1);
    assert!(tone_strength(&a, 660.0) < 0.01);
    let silent = synth_frames(440.0, 5, 0.001);
    assert!(non_silent(&silent).is_empty());
}

#[test]
#[should_panic(expected = "not contiguous at frame 2")]
fn assert_contiguous_reports_gap() {
    let mut frames = synth_frames(440.0, 5, 0.5);
    frames.remove(2);
    assert_contiguous(&frames);
}

// ---------------------------------------------------------------------------------------------
// A real serenity Client + poise framework + songbird, pointed at the emulator: proves the whole
// path the bot uses (shard handshake, cache, poise dispatch, songbird gateway hooks, voice).
// ---------------------------------------------------------------------------------------------

mod mini_bot {
    use serenity::all as sy;
    use songbird::SerenityInit;

    pub struct Data;
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    pub type Context<'a> = poise::Context<'a, Data, Error>;

    /// Reply pong
    #[poise::command(slash_command)]
    pub async fn ping(ctx: Context<'_>) -> Result<(), Error> {
        ctx.say("pong").await?;
        Ok(())
    }

    /// Join the caller's voice channel and play a tone
    #[poise::command(slash_command, guild_only)]
    pub async fn join(
        ctx: Context<'_>,
        #[description = "frequency"] freq: Option<f64>,
    ) -> Result<(), Error> {
        ctx.defer().await?;
        let guild_id = ctx.guild_id().unwrap();
        let channel = ctx.guild().and_then(|g| {
            g.voice_states
                .get(&ctx.author().id)
                .and_then(|v| v.channel_id)
        });
        let Some(channel) = channel else {
            ctx.say("you are not in a voice channel").await?;
            return Ok(());
        };
        let manager = songbird::get(ctx.serenity_context()).await.unwrap();
        let call = manager.join(guild_id, channel).await?;
        let freq = freq.unwrap_or(440.0) as f32;
        let mut bytes = Vec::new();
        for i in 0..48_000 * 2 {
            let s = (i as f32 * freq * 2.0 * std::f32::consts::PI / 48_000.0).sin() * 0.5;
            bytes.extend_from_slice(&s.to_le_bytes());
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let input: songbird::input::Input =
            songbird::input::RawAdapter::new(std::io::Cursor::new(bytes), 48_000, 2).into();
        call.lock().await.play_input(input);
        ctx.say(format!("joined <#{channel}>")).await?;
        Ok(())
    }

    /// Leave voice
    #[poise::command(slash_command, guild_only)]
    pub async fn leave(ctx: Context<'_>) -> Result<(), Error> {
        let manager = songbird::get(ctx.serenity_context()).await.unwrap();
        manager.remove(ctx.guild_id().unwrap()).await?;
        ctx.send(poise::CreateReply::default().content("bye").ephemeral(true))
            .await?;
        Ok(())
    }

    pub async fn client(token: &str, api_base: &str) -> sy::Client {
        let framework = poise::Framework::builder()
            .options(poise::FrameworkOptions {
                commands: vec![ping(), join(), leave()],
                ..Default::default()
            })
            .setup(|ctx, _ready, framework| {
                Box::pin(async move {
                    poise::builtins::register_globally(ctx, &framework.options().commands).await?;
                    Ok(Data)
                })
            })
            .build();
        let http = sy::HttpBuilder::new(token)
            .proxy(api_base)
            .ratelimiter_disabled(true)
            .build();
        sy::ClientBuilder::new_with_http(http, sy::GatewayIntents::non_privileged())
            .framework(framework)
            .register_songbird_from_config(super::songbird_config())
            .await
            .expect("client")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_serenity_poise_songbird_bot() {
    let emu = Emulator::start().await;
    world(&emu);
    emu.user_join_voice(G, USER, VC).await;

    let mut client = mini_bot::client(&emu.bot_token(), &emu.api_base()).await;
    let shards = client.shard_manager.clone();
    let task = tokio::spawn(async move { client.start().await });

    emu.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(emu.registered_commands(), vec!["ping", "join", "leave"]);

    let pong = emu
        .command(G, TC, USER, "ping", json!([]))
        .await
        .response(T)
        .await;
    assert_eq!(pong.content, "pong");

    // The gateway drops (close 4000): serenity resumes the session on a new connection.
    emu.disconnect_gateway(4000).await;
    emu.wait_for("gateway resume", Duration::from_secs(30), |e| {
        e.gateway_resumes() == 1 && e.gateway_connected()
    })
    .await;
    assert_eq!(emu.gateway_connections(), 2);

    let joined = emu
        .command(
            G,
            TC,
            USER,
            "join",
            json!([{"name": "freq", "type": 10, "value": 660.0}]),
        )
        .await
        .response(Duration::from_secs(20))
        .await;
    assert_eq!(joined.content, format!("joined <#{VC}>"));
    assert_eq!(emu.bot_voice_channel(G), Some(VC));
    emu.wait_audio_frames(G, 40, Duration::from_secs(20)).await;
    let f = dominant_frequency(&non_silent(&emu.audio(G)));
    assert!((f - 660.0).abs() <= 10.0, "dominant frequency {f}");

    let bye = emu
        .command(G, TC, USER, "leave", json!([]))
        .await
        .response(T)
        .await;
    assert_eq!(bye.content, "bye");
    assert!(bye.ephemeral);
    emu.wait_bot_voice(G, None, T).await;
    assert_eq!(emu.voice_state_updates(G), vec![Some(VC), None]);
    assert_eq!(emu.voice_connections(G), 1);
    emu.assert_no_protocol_errors();
    assert!(emu.voice_errors().is_empty(), "{:#?}", emu.voice_errors());

    shards.shutdown_all().await;
    task.abort();
}
