// A small music bot written with discord.js and @discordjs/voice (from npm, none of this
// project's code), pointed at the standalone Discord emulator. tests/independent/check.rs
// runs it; it can also be run by hand against `cargo test --test independent -- --serve`.
//
// It logs in, registers /tone, and on /tone replies, joins the caller's voice channel with
// DAVE (end-to-end encryption, through @snazzah/davey), plays a sine generated here, edits its
// reply, leaves and exits 0. Every step is one JSON line on stdout; any failure, or the
// deadline passing, exits 1.
//
// Environment: EMULATOR_API (e.g. http://127.0.0.1:PORT/api), DISCORD_TOKEN,
// NODE_EXTRA_CA_CERTS (the emulator's CA bundle, for the wss:// voice server),
// TONE_SECONDS (default 3), CLIENT_DEADLINE_MS (default 40000), CLIENT_DEBUG=1 (discord.js's
// own debug lines on stderr).
'use strict';

const { Readable } = require('node:stream');
const {
  ApplicationCommandOptionType,
  Client,
  Events,
  GatewayIntentBits,
  MessageFlags,
} = require('discord.js');
const {
  AudioPlayerStatus,
  NoSubscriberBehavior,
  StreamType,
  VoiceConnectionStatus,
  createAudioPlayer,
  createAudioResource,
  entersState,
  joinVoiceChannel,
} = require('@discordjs/voice');

const RATE = 48000;
const FRAME_SAMPLES = 960; // 20 ms, the frame @discordjs/voice encodes

function emit(event, data = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
}

function fail(error) {
  emit('error', { message: String(error && error.stack ? error.stack : error) });
  process.exit(1);
}

function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) fail(`${name} is not set`);
    return fallback;
  }
  return v;
}

const api = env('EMULATOR_API');
const token = env('DISCORD_TOKEN');
const seconds = Number(env('TONE_SECONDS', '3'));
const deadline = Number(env('CLIENT_DEADLINE_MS', '40000'));
setTimeout(() => fail(`deadline of ${deadline} ms passed`), deadline);
process.on('unhandledRejection', fail);

/** `secs` of a `hz` sine, 48 kHz stereo s16le: what StreamType.Raw expects. */
function tone(hz, secs) {
  const frames = Math.round((secs * RATE) / FRAME_SAMPLES);
  const buf = Buffer.alloc(frames * FRAME_SAMPLES * 4);
  for (let i = 0; i < frames * FRAME_SAMPLES; i++) {
    const s = Math.round(0.4 * 32767 * Math.sin((2 * Math.PI * hz * i) / RATE));
    buf.writeInt16LE(s, i * 4);
    buf.writeInt16LE(s, i * 4 + 2);
  }
  return { stream: Readable.from([buf]), frames };
}

const client = new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildVoiceStates],
  rest: { api },
});
// CLIENT_DEBUG=1: discord.js's and the voice connection's own debug lines, on stderr.
const debug = env('CLIENT_DEBUG', '') === '1';
if (debug) {
  client.on(Events.Debug, (m) => process.stderr.write(`[gateway] ${m}\n`));
  client.on(Events.Warn, (m) => process.stderr.write(`[warn] ${m}\n`));
  client.rest.on('response', (req, res) => process.stderr.write(`[rest] ${req.method} ${req.path} ${res.status}\n`));
}

client.once(Events.ClientReady, async (c) => {
  emit('ready', { user_id: c.user.id, guilds: c.guilds.cache.size });
  const commands = await c.application.commands.set([
    {
      name: 'tone',
      description: 'Plays a sine in your voice channel',
      options: [
        {
          name: 'hz',
          description: 'Frequency',
          type: ApplicationCommandOptionType.Integer,
          min_value: 50,
          max_value: 2000,
        },
      ],
    },
  ]);
  emit('registered', { names: commands.map((cmd) => cmd.name) });
});

client.on(Events.InteractionCreate, (interaction) => {
  if (!interaction.isChatInputCommand() || interaction.commandName !== 'tone') return;
  play(interaction).catch(fail);
});

async function play(interaction) {
  const hz = interaction.options.getInteger('hz') ?? 440;
  const channelId = interaction.member?.voice?.channelId;
  if (!channelId) {
    await interaction.reply({ content: 'Join a voice channel first.', flags: MessageFlags.Ephemeral });
    return;
  }
  // withResponse: discord.js asks for the callback's resource (`?with_response=true`).
  const answer = await interaction.reply({ content: `Playing ${hz} Hz in <#${channelId}>`, withResponse: true });
  emit('replied', { message_id: answer.resource?.message?.id ?? null });

  const connection = joinVoiceChannel({
    channelId,
    guildId: interaction.guildId,
    adapterCreator: interaction.guild.voiceAdapterCreator,
    selfDeaf: true,
    selfMute: false,
    daveEncryption: true,
    debug,
  });
  if (debug) connection.on('debug', (m) => process.stderr.write(`[voice] ${m}\n`));
  const transitioned = new Promise((resolve) => connection.once('transitioned', resolve));
  await entersState(connection, VoiceConnectionStatus.Ready, 20_000);
  await transitioned;
  emit('joined', { channel_id: channelId, voice_privacy_code: connection.voicePrivacyCode ?? null });

  const player = createAudioPlayer({ behaviors: { noSubscriber: NoSubscriberBehavior.Pause } });
  connection.subscribe(player);
  const { stream, frames } = tone(hz, seconds);
  player.play(createAudioResource(stream, { inputType: StreamType.Raw }));
  await entersState(player, AudioPlayerStatus.Playing, 5_000);
  await entersState(player, AudioPlayerStatus.Idle, (seconds + 10) * 1000);
  emit('played', { hz, frames });

  await interaction.editReply(`Played ${hz} Hz for ${seconds} s`);
  const notice = await interaction.channel.send(`Finished: ${hz} Hz`);
  emit('notice', { message_id: notice.id });
  connection.destroy();
  await client.destroy();
  emit('done');
  process.exit(0);
}

client.login(token).catch(fail);
