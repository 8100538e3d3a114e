// The live call, its helpers and `transcribe --live` against an in-process fake of TranscribeLive (no model).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, beforeEach, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

import {
  STATUS_DETAILS_KEY,
  TranscribeError,
  VENDORED_PROTO_ROOT,
  createClient,
  live,
  liveConfig,
  liveResponseToJson,
  loadPackages,
  paced,
  rechunk,
} from '../lib/client.js';

const run = promisify(execFile);
const NODE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(NODE_DIR, 'bin', 'transcribe.js');
const PCM = path.resolve(NODE_DIR, '..', '..', 'tests', 'data', 'speech_en_s16le_16k_mono.pcm');
const CHUNKS = [0, 1, 2, 3, 4].map((value) => Buffer.alloc(3200, value));
const WAIT_MS = 10_000;

function duration(ms) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

function statusTrailer() {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : path.join(VENDORED_PROTO_ROOT, target));
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
  const Status = root.lookupType('google.rpc.Status');
  const ErrorInfo = root.lookupType('google.rpc.ErrorInfo');
  const info = ErrorInfo.encode(ErrorInfo.fromObject({ reason: 'AUDIO_FORMAT_MISMATCH', domain: 'transcribe.v1' })).finish();
  const status = Status.encode(Status.fromObject({
    code: grpc.status.INVALID_ARGUMENT,
    message: 'odd number of bytes',
    details: [{ type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: info }],
  })).finish();
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(status));
  return metadata;
}

/**
 * A scriptable TranscribeLive: an interim per chunk, then a final digest of the audio on half-close.
 * failAfter aborts with INVALID_ARGUMENT after that many chunks; hold keeps the call open after the half-close.
 */
class FakeLive {
  constructor() {
    this.calls = [];
    this.failAfter = null;
    this.hold = false;
    this.ended = null;
  }

  reset() {
    this.calls = [];
    this.failAfter = null;
    this.hold = false;
    this.ended = new Promise((resolve) => { this.resolveEnded = resolve; });
  }

  handle(call) {
    const seen = { config: null, chunks: [], metadata: call.metadata.getMap(), deadline: call.getDeadline(), halfClosed: false, cancelled: false };
    this.calls.push(seen);
    call.on('cancelled', () => {
      seen.cancelled = true;
      this.resolveEnded();
    });
    call.on('data', (request) => {
      if (request.liveConfig) {
        seen.config = request.liveConfig;
        call.write({ backend: 'BACKEND_LOCAL', model: 'fake', results: [] });
        return;
      }
      seen.chunks.push(request.audioContent);
      if (this.failAfter !== null && seen.chunks.length > this.failAfter) {
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'odd number of bytes', metadata: statusTrailer() });
        this.resolveEnded();
        return;
      }
      if (seen.config.interimResults) {
        call.write({ results: [{ text: String(seen.chunks.length), isFinal: false, stability: 0.5, endOffset: duration(250) }] });
      }
    });
    call.on('end', () => {
      seen.halfClosed = true;
      if (this.hold) return; // until the client cancels
      const digest = createHash('sha256').update(Buffer.concat(seen.chunks)).digest('hex');
      call.write({ results: [{ text: digest, isFinal: true, startOffset: duration(0), endOffset: duration(1500) }] });
      call.end();
      this.resolveEnded();
    });
  }
}

function texts(responses) {
  return responses.flatMap((response) => response.results.map((result) => [result.text, result.isFinal]));
}

const DIGEST = createHash('sha256').update(Buffer.concat(CHUNKS)).digest('hex');
const EXPECTED = [['1', false], ['2', false], ['3', false], ['4', false], ['5', false], [DIGEST, true]];

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

function within(promise, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS).unref()),
  ]);
}

describe('live against a fake TranscribeLive', () => {
  const fake = new FakeLive();
  let server;
  let address;
  let client;

  before(async () => {
    server = new grpc.Server();
    server.addService(loadPackages().transcribe.v1.TranscribeService.service, { TranscribeLive: (call) => fake.handle(call) });
    const port = await new Promise((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound)));
    });
    address = `127.0.0.1:${port}`;
    client = createClient(address, { token: 't0k' });
  });

  after(() => {
    client?.close();
    server?.forceShutdown();
  });

  beforeEach(() => fake.reset());

  test('live() sends the config first, then every chunk, half-closes, and yields every response', async () => {
    async function* chunks() {
      yield* CHUNKS;
    }
    const responses = await collect(live(client, chunks(), {
      config: { model: 'tiny.en', languageCode: 'en', enableWordTimeOffsets: true },
      sampleRateHertz: 48000,
      audioChannelCount: 2,
      voiceActivityEvents: true,
      speechEndTimeoutSeconds: 0.3,
    }));
    assert.deepEqual(texts(responses), EXPECTED);
    assert.equal(responses[0].model, 'fake');
    const [call] = fake.calls;
    assert.ok(Buffer.concat(call.chunks).equals(Buffer.concat(CHUNKS)));
    assert.equal(call.chunks.length, CHUNKS.length);
    assert.ok(call.halfClosed);
    assert.equal(call.metadata.authorization, 'Bearer t0k');
    assert.equal(call.deadline, Infinity, 'a live call has no deadline by default');
    assert.equal(call.config.audioFormat, 'LIVE_AUDIO_FORMAT_LINEAR16');
    assert.equal(call.config.sampleRateHertz, 48000);
    assert.equal(call.config.audioChannelCount, 2);
    assert.equal(call.config.interimResults, true);
    assert.equal(call.config.voiceActivityEvents, true);
    assert.deepEqual(call.config.speechEndTimeout, { seconds: '0', nanos: 300_000_000 });
    assert.equal(call.config.config.model, 'tiny.en');
    assert.equal(call.config.config.enableWordTimeOffsets, true);
  });

  test('a sync iterable works and deadlineSeconds sets a deadline', async () => {
    const before = Date.now();
    const responses = await collect(live(client, CHUNKS, { interimResults: false, deadlineSeconds: 30 }));
    assert.deepEqual(texts(responses), [[DIGEST, true]]);
    const deadline = Number(fake.calls[0].deadline); // a Date or milliseconds since the epoch
    assert.ok(deadline - before > 25_000 && deadline - before <= 31_000, String(deadline));
  });

  test('a server error throws a TranscribeError with its reason after the earlier responses', async () => {
    fake.failAfter = 2;
    const seen = [];
    await assert.rejects(async () => {
      for await (const response of live(client, CHUNKS)) seen.push(response);
    }, (error) => {
      assert.ok(error instanceof TranscribeError, String(error));
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(error.reason, 'AUDIO_FORMAT_MISMATCH');
      assert.equal(error.exitCode, 67);
      return true;
    });
    assert.deepEqual(texts(seen), [['1', false], ['2', false]]);
  });

  test('a chunk source that throws cancels the call and its error is thrown', async () => {
    fake.hold = true;
    async function* failing() {
      yield CHUNKS[0];
      throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
    }
    await assert.rejects(collect(live(client, failing())), { code: 'EIO' });
    await within(fake.ended, 'the server to see the cancellation');
    assert.equal(fake.calls[0].cancelled, true);
  });

  test('leaving the loop early cancels the call at once', async () => {
    fake.hold = true;
    for await (const response of live(client, CHUNKS)) {
      if (response.results.length) break;
    }
    await within(fake.ended, 'the server to see the cancellation');
    assert.equal(fake.calls[0].cancelled, true);
  });

  test('aborting the signal cancels the call', async () => {
    fake.hold = true;
    const controller = new AbortController();
    await assert.rejects(async () => {
      for await (const response of live(client, CHUNKS, { signal: controller.signal })) {
        if (response.results.length) controller.abort();
      }
    }, (error) => error instanceof TranscribeError && error.code === grpc.status.CANCELLED);
    await within(fake.ended, 'the server to see the cancellation');
    assert.equal(fake.calls[0].cancelled, true);
  });

  test('chunks must be Buffers', async () => {
    await assert.rejects(collect(live(client, [Buffer.from('ok'), 'text'])), TypeError);
  });

  test('the CLI prints one JSON object per response with --live --json', async () => {
    const { stdout } = await run(process.execPath, [CLI, '--live', '--speed', '0', '--json', '--address', address, PCM]);
    const lines = stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.deepEqual(lines[0], { backend: 'local', model: 'fake' });
    assert.deepEqual(lines[1], { results: [{ text: '1', is_final: false, stability: 0.5, start_offset: 0, end_offset: 0.25 }] });
    assert.equal(lines.at(-1).results[0].is_final, true);
    const [call] = fake.calls;
    assert.ok(call.chunks.slice(0, -1).every((chunk) => chunk.length === 3200), 'file chunks are 100 ms');
    assert.equal(call.config.interimResults, true);
  });

  test('the CLI prints finals only when not on a terminal, and exits 64 + code on errors', async () => {
    const { stdout } = await run(process.execPath, [CLI, '--live', '--speed', '0', '--address', address, PCM]);
    assert.equal(stdout.trim().split('\n').length, 1);
    assert.match(stdout, /^[0-9a-f]{64}\n$/);
    assert.equal(fake.calls[0].config.interimResults, false);
    fake.reset();
    fake.failAfter = 0;
    await assert.rejects(run(process.execPath, [CLI, '--live', '--speed', '0', '--address', address, PCM]), (error) => {
      assert.equal(error.code, 67);
      assert.match(error.stderr, /INVALID_ARGUMENT: odd number of bytes \[AUDIO_FORMAT_MISMATCH\]/);
      return true;
    });
  });

  test('the CLI reads raw PCM of any layout from standard input', async () => {
    const child = execFile(process.execPath, [CLI, '--live', '-', '--rate', '8000', '--channels', '2', '--address', address]);
    const done = new Promise((resolve, reject) => child.once('exit', resolve).once('error', reject));
    child.stdin.end(Buffer.concat(CHUNKS));
    assert.equal(await done, 0);
    const [call] = fake.calls;
    assert.equal(call.config.sampleRateHertz, 8000);
    assert.equal(call.config.audioChannelCount, 2);
    assert.ok(call.chunks.every((chunk) => chunk.length === 8000 / 10 * 2 * 2));
    assert.ok(Buffer.concat(call.chunks).equals(Buffer.concat(CHUNKS)));
  });
});

test('liveConfig sends the PCM layout only for LINEAR16 and refuses unknown formats', () => {
  const webm = liveConfig({ audioFormat: 'webm-opus', interimResults: false, speechStartTimeoutSeconds: 2.5 });
  assert.deepEqual(webm, {
    config: {}, interimResults: false, voiceActivityEvents: false, audioFormat: 'LIVE_AUDIO_FORMAT_WEBM_OPUS',
    speechStartTimeout: { seconds: '2', nanos: 500_000_000 },
  });
  assert.equal(liveConfig({ audioFormat: 'LIVE_AUDIO_FORMAT_OGG_OPUS' }).audioFormat, 'LIVE_AUDIO_FORMAT_OGG_OPUS');
  assert.throws(() => liveConfig({ audioFormat: 'mp3' }), RangeError);
  assert.throws(() => liveConfig({ speechEndTimeoutSeconds: -1 }), RangeError);
});

test('liveResponseToJson gives the Python CLI shape: snake_case, offsets in seconds, the language when known, event types', () => {
  assert.deepEqual(liveResponseToJson({
    results: [{ text: ' Hi.', isFinal: true, stability: 0, startOffset: duration(500), endOffset: duration(2600), words: [{ word: ' Hi.', startOffset: duration(500), endOffset: duration(900), probability: 0.9876 }] }],
    backend: 'BACKEND_UNSPECIFIED', model: '', voiceActivity: null,
  }), {
    results: [{ text: ' Hi.', is_final: true, stability: 0, start_offset: 0.5, end_offset: 2.6, words: [{ word: ' Hi.', start_offset: 0.5, end_offset: 0.9, probability: 0.988 }] }],
  });
  assert.deepEqual(liveResponseToJson({
    results: [{ text: ' Salut.', isFinal: false, stability: 0.5, startOffset: duration(0), endOffset: duration(800), languageCode: 'fr', words: [] }],
  }), {
    results: [{ text: ' Salut.', is_final: false, stability: 0.5, start_offset: 0, end_offset: 0.8, language_code: 'fr' }],
  });
  assert.deepEqual(liveResponseToJson({ results: [], voiceActivity: { type: 'VOICE_ACTIVITY_EVENT_TYPE_SPEECH_END', offset: duration(4100) } }), {
    voice_activity: { type: 'speech_end', offset: 4.1 },
  });
});

test('rechunk cuts any stream into chunks of one size', async () => {
  async function* uneven() {
    yield Buffer.alloc(5, 1);
    yield Buffer.alloc(1, 2);
    yield Buffer.alloc(9, 3);
  }
  const chunks = await collect(rechunk(uneven(), 4));
  assert.deepEqual(chunks.map((chunk) => chunk.length), [4, 4, 4, 3]);
  assert.deepEqual([...Buffer.concat(chunks)], [1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3]);
});

/** A clock that moves only when paced() sleeps. */
function fakeClock() {
  const clock = { time: 1000, sleeps: [] };
  clock.now = () => clock.time;
  clock.sleep = async (ms) => {
    clock.sleeps.push(Math.round(ms * 1000) / 1000);
    clock.time += ms;
  };
  return clock;
}

test('paced releases each chunk once its audio has been spoken at the given speed', async () => {
  const chunks = [Buffer.alloc(3200), Buffer.alloc(3200), Buffer.alloc(3200)];
  for (const [speed, expected] of [[1, [100, 100, 100]], [2, [50, 50, 50]], [0, []]]) {
    const clock = fakeClock();
    assert.equal((await collect(paced(chunks, { speed, bytesPerSecond: 32000, now: clock.now, sleep: clock.sleep }))).length, 3);
    assert.deepEqual(clock.sleeps, expected, `speed ${speed}`);
  }
});

test('paced catches up after a stall and stops when its signal is aborted', async () => {
  const clock = fakeClock();
  async function* stalling() {
    yield Buffer.alloc(3200);
    clock.time += 350; // the source stalled for 350 ms
    for (let i = 0; i < 4; i += 1) yield Buffer.alloc(3200);
  }
  assert.equal((await collect(paced(stalling(), { speed: 1, bytesPerSecond: 32000, now: clock.now, sleep: clock.sleep }))).length, 5);
  assert.deepEqual(clock.sleeps, [100, 50]);
  const controller = new AbortController();
  const stopping = fakeClock();
  const released = [];
  for await (const chunk of paced([Buffer.alloc(3200), Buffer.alloc(3200), Buffer.alloc(3200)], {
    speed: 1, bytesPerSecond: 32000, signal: controller.signal, now: stopping.now, sleep: stopping.sleep,
  })) {
    released.push(chunk);
    controller.abort();
  }
  assert.equal(released.length, 1);
});

test('the CLI refuses live-only options without --live and conflicting ones with it', async () => {
  for (const args of [['--rate', '8000', 'x.pcm'], ['--live', '--stream', 'x.pcm'], ['--live', '--speed', '-1', 'x.pcm'], ['--live', '--interim', '--no-interim', 'x.pcm'], ['--live', '--endpoint-ms', '0', 'x.pcm']]) {
    await assert.rejects(run(process.execPath, [CLI, ...args]), { code: 2 }, args.join(' '));
  }
  await assert.rejects(run(process.execPath, [CLI, '--live', '--address', '127.0.0.1:9', 'no-such-file.pcm']), (error) => {
    assert.equal(error.code, 1);
    assert.match(error.stderr, /no-such-file\.pcm: no such file or directory/);
    return true;
  });
});
