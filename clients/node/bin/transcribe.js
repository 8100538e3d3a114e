#!/usr/bin/env node
// transcribe: transcribe an audio file with a transcribe.v1.TranscribeService server.

import fs from 'node:fs';
import { parseArgs } from 'node:util';

import {
  DEFAULT_ADDRESS,
  LIVE_CHUNK_SECONDS,
  TranscribeError,
  createClient,
  live,
  liveResponseToJson,
  paced,
  rechunk,
  transcribeFile,
  transcribeStream,
  transcriptToJson,
} from '../lib/client.js';

const PROG = 'transcribe';
const EXIT_OK = 0;
const EXIT_LOCAL_ERROR = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;
const CLEAR_LINE = '\r\x1b[2K';

const USAGE = `usage: ${PROG} [--address HOST:PORT] [--stream] [--language L] [--model M] [--json] FILE
       ${PROG} --live [--rate HZ] [--channels N] [--speed N] [--interim|--no-interim] [--json] FILE

Transcribe FILE (or - for standard input, always streamed) and print the text.
With --live, FILE (or -) is headerless 16-bit little-endian PCM sent as it is
spoken (TranscribeLive): final results print as lines; on a terminal the
interim text of the current utterance is redrawn in place.

options:
  --address HOST:PORT  server address or gRPC target (default: $TRANSCRIBE_ADDRESS or ${DEFAULT_ADDRESS})
  --stream             upload in chunks with TranscribeStream instead of one message
  --language L         spoken language as a BCP-47 tag, e.g. en (default: detect)
  --model M            model name as listed by ListModels (default: the backend's)
  --words              request word timestamps (shown with --json)
  --json               print the whole transcript as proto3 JSON
  --timeout SECONDS    deadline of the call (default: 300; none with --live)
  --chunk-size BYTES   chunk size of --stream uploads (default: 262144)
  --token TOKEN        bearer token (default: $TRANSCRIBE_TOKEN)
  --tls                use TLS with the system's root certificates
  --ca-cert FILE       PEM root certificates that verify the server (implies --tls)
  -h, --help           show this help

live options:
  --live               live transcription of raw PCM (no deadline unless --timeout)
  --rate HZ            sample rate of the PCM (default: 16000)
  --channels N         interleaved channels of the PCM (default: 1)
  --speed N            play FILE at N times real time; 0 = as fast as possible
                       (default: 1; standard input is sent as it arrives)
  --interim            ask for interim results (default: on a terminal or with --json)
  --no-interim         final results only
  --vad-events         ask for voice activity events (printed on stderr, or in --json)
  --endpoint-ms MS     the pause that ends an utterance (default: the server's)
  --json               with --live: one JSON object per response and line
                       (results with offsets in seconds, voice_activity, backend, model)
  Interrupt once to stop sending and get the last results, twice to quit.

exit codes: 0 success; 1 local error (such as a missing file); 2 usage error;
64 + the gRPC status code when the call fails (grpcurl's convention: 67
INVALID_ARGUMENT, 68 DEADLINE_EXCEEDED, 72 RESOURCE_EXHAUSTED, 78 UNAVAILABLE).
`;

class UsageError extends Error {}

function positiveNumber(name, text, { integer = false } = {}) {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(text)}`);
  }
  return value;
}

function parse(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        address: { type: 'string', default: process.env.TRANSCRIBE_ADDRESS || DEFAULT_ADDRESS },
        stream: { type: 'boolean', default: false },
        language: { type: 'string', default: '' },
        model: { type: 'string', default: '' },
        words: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        timeout: { type: 'string' },
        'chunk-size': { type: 'string' },
        token: { type: 'string', default: process.env.TRANSCRIBE_TOKEN || undefined },
        tls: { type: 'boolean', default: false },
        'ca-cert': { type: 'string' },
        live: { type: 'boolean', default: false },
        rate: { type: 'string' },
        channels: { type: 'string' },
        speed: { type: 'string' },
        interim: { type: 'boolean' },
        'no-interim': { type: 'boolean' },
        'vad-events': { type: 'boolean', default: false },
        'endpoint-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(error.message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  if (positionals.length !== 1) throw new UsageError(positionals.length ? 'expected one FILE' : 'missing FILE');
  if (!values.live) {
    const liveOnly = ['rate', 'channels', 'speed', 'interim', 'no-interim', 'vad-events', 'endpoint-ms'].filter((name) => values[name]);
    if (liveOnly.length) throw new UsageError(`--${liveOnly[0]} needs --live`);
  } else if (values.stream) {
    throw new UsageError('--stream and --live cannot be combined');
  }
  if (values.interim && values['no-interim']) throw new UsageError('--interim and --no-interim cannot be combined');
  let speed;
  if (values.speed !== undefined) {
    speed = Number(values.speed);
    if (!Number.isFinite(speed) || speed < 0 || values.speed.trim() === '') throw new UsageError(`--speed must be zero or more, got ${JSON.stringify(values.speed)}`);
  }
  return {
    file: positionals[0],
    live: values.live,
    rate: positiveNumber('--rate', values.rate, { integer: true }) ?? 16000,
    channels: positiveNumber('--channels', values.channels, { integer: true }) ?? 1,
    speed,
    interim: values.interim ? true : values['no-interim'] ? false : undefined,
    vadEvents: values['vad-events'],
    endpointMs: positiveNumber('--endpoint-ms', values['endpoint-ms'], { integer: true }),
    address: values.address,
    stream: values.stream || positionals[0] === '-',
    config: { model: values.model, languageCode: values.language, enableWordTimeOffsets: values.words },
    json: values.json,
    timeout: positiveNumber('--timeout', values.timeout),
    chunkSize: positiveNumber('--chunk-size', values['chunk-size'], { integer: true }),
    token: values.token,
    tls: values.tls,
    caCert: values['ca-cert'],
  };
}

function render(transcript, json) {
  if (json) return `${JSON.stringify(transcriptToJson(transcript), null, 2)}\n`;
  let text = transcript.text.trim();
  if (!text) text = transcript.segments.map((segment) => segment.text.trim()).filter(Boolean).join(' ');
  return text ? `${text}\n` : '';
}

/** Prints live responses: JSON lines, or finals as lines with the interim redrawn in place on a terminal. */
class LivePrinter {
  constructor({ json, terminal, out = process.stdout, err = process.stderr }) {
    this.json = json;
    this.terminal = terminal;
    this.out = out;
    this.err = err;
    this.interim = '';
  }

  show(response) {
    if (this.json) {
      this.out.write(`${JSON.stringify(liveResponseToJson(response))}\n`);
      return;
    }
    if (response.voiceActivity) {
      const { type, offset } = liveResponseToJson(response).voice_activity;
      const interim = this.interim;
      this.clear();
      this.err.write(`[speech ${type === 'speech_begin' ? 'began' : 'ended'} at ${offset.toFixed(2)} s]\n`);
      if (interim) this.redraw(interim);
    }
    for (const result of response.results) {
      const text = result.text.split(/\s+/).filter(Boolean).join(' ');
      if (result.isFinal) {
        this.clear();
        if (text) this.out.write(`${text}\n`);
      } else if (this.terminal) {
        this.redraw(text);
      }
    }
  }

  redraw(text) {
    // One line only: \r returns to the start of the line the cursor is on.
    const width = Math.max((this.out.columns || 80) - 1, 10); // a pty may report 0 columns
    const shown = text.length <= width ? text : `…${text.slice(text.length - width + 1)}`;
    this.out.write(CLEAR_LINE + shown);
    this.interim = shown;
  }

  clear() {
    if (this.interim) {
      this.out.write(CLEAR_LINE);
      this.interim = '';
    }
  }
}

async function runLive(client, args) {
  const fromStdin = args.file === '-';
  const input = fromStdin ? process.stdin : fs.createReadStream(args.file);
  // Fail on a missing file before the call starts.
  if (!fromStdin) await new Promise((resolve, reject) => input.once('open', resolve).once('error', reject));
  const bytesPerSecond = args.rate * args.channels * 2;
  const chunkBytes = Math.max(1, Math.round(args.rate * LIVE_CHUNK_SECONDS)) * args.channels * 2;
  const stop = new AbortController();
  const interrupted = () => {
    if (stop.signal.aborted) process.exit(EXIT_INTERRUPTED);
    // Stop sending: the server flushes the last results, then the call ends. (A recorder piping into standard
    // input gets the same interrupt and ends its output.)
    stop.abort();
  };
  process.on('SIGINT', interrupted);
  const terminal = Boolean(process.stdout.isTTY);
  const printer = new LivePrinter({ json: args.json, terminal });
  try {
    const chunks = paced(rechunk(input, chunkBytes), { speed: args.speed ?? (fromStdin ? 0 : 1), bytesPerSecond, signal: stop.signal });
    const responses = live(client, chunks, {
      config: args.config,
      sampleRateHertz: args.rate,
      audioChannelCount: args.channels,
      interimResults: args.interim ?? (args.json || terminal),
      voiceActivityEvents: args.vadEvents,
      speechEndTimeoutSeconds: args.endpointMs === undefined ? undefined : args.endpointMs / 1000,
      deadlineSeconds: args.timeout,
    });
    for await (const response of responses) printer.show(response);
  } finally {
    printer.clear();
    process.off('SIGINT', interrupted);
    if (!fromStdin) input.destroy();
  }
  return stop.signal.aborted ? EXIT_INTERRUPTED : EXIT_OK;
}

function describeLocalError(error) {
  if (error?.code && error?.path) return `${error.path}: ${error.code === 'ENOENT' ? 'no such file or directory' : error.message}`;
  return error?.message ?? String(error);
}

async function main(argv) {
  let args;
  try {
    args = parse(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${PROG}: error: ${error.message}\n${USAGE.split('\n')[0]}\n`);
    return EXIT_USAGE;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return EXIT_OK;
  }
  let client;
  try {
    if (args.file === '-' && process.stdin.isTTY) {
      throw new UsageError('refusing to read audio from a terminal; pipe or redirect it to standard input');
    }
    client = createClient(args.address, {
      deadlineSeconds: args.timeout,
      token: args.token,
      tls: args.tls,
      rootCerts: args.caCert ? fs.readFileSync(args.caCert) : undefined,
    });
    if (args.live) return await runLive(client, args);
    const transcript = args.stream
      ? await transcribeStream(client, args.file === '-' ? process.stdin : args.file, args.config, { chunkSize: args.chunkSize })
      : await transcribeFile(client, args.file, args.config);
    process.stdout.write(render(transcript, args.json));
    return EXIT_OK;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${PROG}: error: ${error.message}\n`);
      return EXIT_USAGE;
    }
    if (error instanceof TranscribeError) {
      process.stderr.write(`${PROG}: ${error}\n`);
      for (const { field, description } of error.fieldViolations) process.stderr.write(`  ${field}: ${description}\n`);
      return error.exitCode;
    }
    process.stderr.write(`${PROG}: ${describeLocalError(error)}\n`);
    return EXIT_LOCAL_ERROR;
  } finally {
    client?.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
