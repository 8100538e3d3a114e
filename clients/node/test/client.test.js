// End-to-end tests of the Node client and CLI against the real Python server
// (`python -m service` from the repository's .venv, with the bundled tiny.en).

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { TranscribeError, createClient, health, listModels, live, transcribeFile, transcribeStream } from '../lib/client.js';

const run = promisify(execFile);
const NODE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPO = path.resolve(NODE_DIR, '..', '..');
const PYTHON = path.resolve(NODE_DIR, '..', '..', '.venv', 'bin', 'python');
const DATA = path.join(REPO, 'tests', 'data');
const CLI = path.join(NODE_DIR, 'bin', 'transcribe.js');
const EXPECTED_WORDS = ['fox', 'lazy'];
const START_TIMEOUT_MS = 60_000;

/** Every file (not folder) under dir, as paths relative to it. */
function filesUnder(dir) {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(dir, path.join(entry.parentPath ?? entry.path, entry.name)));
}

/** Deterministic noise (xorshift32): never a valid audio container, same bytes on every run. */
function noise(length, seed = 0x2545f491) {
  const bytes = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i += 1) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

function assertWords(text, file) {
  const lower = text.toLowerCase();
  for (const word of EXPECTED_WORDS) assert.ok(lower.includes(word), `${file}: ${JSON.stringify(word)} not in ${JSON.stringify(text)}`);
}

describe('transcribe client against the real server', { timeout: 120_000 }, () => {
  let server;
  let serverLog = '';
  let exited;
  let address;
  let client;
  let uploadDir; // the server's TRANSCRIBE_TEMP_DIR
  let workDir; // files the tests write

  before(async () => {
    assert.ok(fs.existsSync(PYTHON), `${PYTHON} is missing: run \`make install\` at the repository root first`);
    uploadDir = fs.mkdtempSync(path.join(os.tmpdir(), 'transcribe-node-uploads-'));
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'transcribe-node-work-'));
    server = spawn(PYTHON, ['-m', 'service'], {
      cwd: REPO,
      env: {
        // Hermetic: no TRANSCRIBE_* or OPENAI_* setting of the caller's shell reaches the server.
        ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(TRANSCRIBE|OPENAI)_/.test(name))),
        TRANSCRIBE_HOST: '127.0.0.1',
        TRANSCRIBE_PORT: '0',
        TRANSCRIBE_HTTP_HOST: '127.0.0.1',
        TRANSCRIBE_HTTP_PORT: '0',
        TRANSCRIBE_MODEL_CACHE_DIR: process.env.TRANSCRIBE_TEST_MODEL_CACHE || path.join(REPO, '.cache', 'models'),
        TRANSCRIBE_TEMP_DIR: uploadDir,
        TRANSCRIBE_DATA_DIR: path.join(workDir, 'data'),
        TRANSCRIBE_GRACE_PERIOD_SECONDS: '5',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
    server.stdout.setEncoding('utf8').on('data', (text) => { serverLog += text; });
    const port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening on" line within ${START_TIMEOUT_MS} ms:\n${serverLog}`)), START_TIMEOUT_MS);
      server.stderr.setEncoding('utf8').on('data', (text) => {
        serverLog += text;
        const match = /listening on 127\.0\.0\.1:(\d+)/.exec(serverLog);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`server exited (code ${code}, signal ${signal}) before listening:\n${serverLog}`));
      });
    });
    address = `127.0.0.1:${port}`;
    client = createClient(address, { deadlineSeconds: 60 });
    // NOT_SERVING until the model is loaded: poll Check.
    const deadline = Date.now() + START_TIMEOUT_MS;
    let status = '';
    while (Date.now() < deadline) {
      try {
        status = await health(client, '', { deadlineSeconds: 2 });
      } catch (error) {
        status = String(error);
      }
      if (status === 'SERVING') break;
      if (server.exitCode !== null) break;
      await sleep(200);
    }
    assert.equal(status, 'SERVING', `server never became SERVING:\n${serverLog}`);
  });

  after(async () => {
    client?.close();
    if (server) {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM');
      const timeout = sleep(30_000, undefined, { ref: false }).then(() => {
        server.kill('SIGKILL');
        return { code: null, signal: 'timed out' };
      });
      const { code, signal } = await Promise.race([exited, timeout]);
      if (process.env.DEBUG_SERVER_LOG) fs.writeFileSync(process.env.DEBUG_SERVER_LOG, serverLog);
      assert.equal(code, 0, `server exited with code ${code}, signal ${signal}:\n${serverLog}`);
    }
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
    if (uploadDir) {
      // The store keeps only its per-user parent folder; every upload and run folder must be gone.
      const left = filesUnder(uploadDir);
      const runs = fs.readdirSync(uploadDir, { recursive: true }).filter((name) => path.basename(String(name)).startsWith('run-'));
      fs.rmSync(uploadDir, { recursive: true, force: true });
      assert.deepEqual(left, [], 'the server left upload files behind');
      assert.deepEqual(runs, [], 'the server left its run folder behind');
    }
  });

  test('Transcribe (unary) transcribes the WAV fixture', async () => {
    const transcript = await transcribeFile(client, path.join(DATA, 'speech_en.wav'), { languageCode: 'en' });
    assertWords(transcript.text, 'speech_en.wav');
    assert.equal(transcript.model, 'tiny.en');
    assert.equal(transcript.backend, 'BACKEND_LOCAL');
    assert.ok(Number(transcript.audioDuration.seconds) >= 6, JSON.stringify(transcript.audioDuration));
  });

  test('TranscribeStream uploads the FLAC fixture in chunks', async () => {
    const transcript = await transcribeStream(client, path.join(DATA, 'speech_en.flac'), {}, { chunkSize: 16 * 1024 });
    assertWords(transcript.text, 'speech_en.flac');
    assert.ok(transcript.segments.length > 0);
  });

  test('ListModels includes tiny.en', async () => {
    const models = await listModels(client);
    const names = models.map((model) => model.name);
    assert.ok(names.includes('tiny.en'), JSON.stringify(names));
    const tiny = models.find((model) => model.name === 'tiny.en');
    assert.equal(tiny.backend, 'BACKEND_LOCAL');
    assert.equal(tiny.isDefault, true);
  });

  test('random bytes fail with INVALID_ARGUMENT and reason AUDIO_UNDECODABLE', async () => {
    const file = path.join(workDir, 'noise.bin');
    fs.writeFileSync(file, noise(64 * 1024));
    for (const send of [transcribeFile, transcribeStream]) {
      await assert.rejects(send(client, file, {}), (error) => {
        assert.ok(error instanceof TranscribeError, String(error));
        assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
        assert.equal(error.codeName, 'INVALID_ARGUMENT');
        assert.equal(error.reason, 'AUDIO_UNDECODABLE');
        assert.equal(error.domain, 'transcribe.v1');
        assert.equal(error.exitCode, 67);
        assert.match(String(error), /^INVALID_ARGUMENT: .+ \[AUDIO_UNDECODABLE\]$/);
        return true;
      });
    }
  });

  test('an invalid config carries its field violation', async () => {
    await assert.rejects(transcribeFile(client, path.join(DATA, 'speech_en.wav'), { temperature: 5 }), (error) => {
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(error.reason, 'INVALID_CONFIG');
      assert.deepEqual(error.fieldViolations.map((violation) => violation.field), ['config.temperature']);
      return true;
    });
  });

  test('an unknown model is NOT_FOUND with reason MODEL_NOT_FOUND', async () => {
    await assert.rejects(transcribeStream(client, path.join(DATA, 'speech_en.ogg'), { model: 'no-such-model' }), (error) => {
      assert.equal(error.code, grpc.status.NOT_FOUND);
      assert.equal(error.reason, 'MODEL_NOT_FOUND');
      return true;
    });
  });

  test('every call has a deadline', async () => {
    await assert.rejects(transcribeFile(client, path.join(DATA, 'speech_en.wav'), {}, { deadlineSeconds: 0.001 }), (error) => {
      assert.equal(error.code, grpc.status.DEADLINE_EXCEEDED);
      return true;
    });
  });

  test('the CLI prints the transcript and exits 0', async () => {
    const { stdout } = await run(process.execPath, [CLI, '--address', address, path.join(DATA, 'speech_en.wav')]);
    assertWords(stdout, 'CLI unary');
    assert.equal(stdout.trim().split('\n').length, 1);
    const streamed = await run(process.execPath, [CLI, '--address', address, '--stream', '--json', '--language', 'en', path.join(DATA, 'speech_en.flac')]);
    const json = JSON.parse(streamed.stdout);
    assertWords(json.text, 'CLI --stream --json');
    assert.match(json.audioDuration, /^\d+(\.\d+)?s$/);
  });

  test('the CLI exits 67 with CODE: message [REASON] for a file that is not audio', async () => {
    await assert.rejects(run(process.execPath, [CLI, '--address', address, path.join(DATA, 'not_audio.txt')]), (error) => {
      assert.equal(error.code, 67);
      assert.equal(error.stdout, '');
      assert.match(error.stderr, /INVALID_ARGUMENT: .+ \[AUDIO_UNDECODABLE\]/);
      return true;
    });
  });

  // Live: the PCM fixture fed faster than real time. These pin delivery (both utterances, in order), not accuracy.
  const LIVE_WORDS = ['quick', 'fox', 'she', 'shore'];
  const PCM = path.join(DATA, 'speech_en_s16le_16k_mono.pcm');

  function assertWordsInOrder(text, what) {
    const lower = text.toLowerCase();
    const positions = LIVE_WORDS.map((word) => lower.indexOf(word));
    assert.ok(positions.every((position) => position >= 0), `${what}: ${JSON.stringify(LIVE_WORDS)} not all in ${JSON.stringify(text)}`);
    assert.deepEqual(positions, [...positions].sort((a, b) => a - b), `${what}: words out of order in ${JSON.stringify(text)}`);
  }

  function* pcmChunks() {
    const audio = fs.readFileSync(PCM);
    for (let offset = 0; offset < audio.length; offset += 3200) yield audio.subarray(offset, offset + 3200);
  }

  test('live() streams PCM and gets the backend first, then the whole text as ordered finals', async () => {
    const responses = [];
    for await (const response of live(client, pcmChunks(), { config: { languageCode: 'en' } })) responses.push(response);
    assert.equal(responses[0].backend, 'BACKEND_LOCAL');
    assert.equal(responses[0].model, 'tiny.en');
    const finals = responses.flatMap((response) => response.results).filter((result) => result.isFinal);
    assert.ok(finals.length > 0);
    assertWordsInOrder(finals.map((result) => result.text).join(' '), 'live()');
    let end = 0;
    for (const result of finals) {
      const start = Number(result.startOffset.seconds) + result.startOffset.nanos / 1e9;
      assert.ok(start + 1e-3 >= end, `finals overlap: ${start} < ${end}`);
      end = Number(result.endOffset.seconds) + result.endOffset.nanos / 1e9;
    }
  });

  test('live() with an unknown model throws NOT_FOUND with reason MODEL_NOT_FOUND', async () => {
    await assert.rejects(async () => {
      for await (const _ of live(client, pcmChunks(), { config: { model: 'no-such-model' } }));
    }, (error) => {
      assert.ok(error instanceof TranscribeError, String(error));
      assert.equal(error.code, grpc.status.NOT_FOUND);
      assert.equal(error.reason, 'MODEL_NOT_FOUND');
      return true;
    });
  });

  test('the CLI --live prints the finals of a PCM file and of standard input', async () => {
    const { stdout } = await run(process.execPath, [CLI, '--live', '--speed', '0', '--address', address, PCM]);
    assertWordsInOrder(stdout, 'CLI --live FILE');
    assert.ok(!stdout.includes('\r'), 'not a terminal: finals only');
    const child = execFile(process.execPath, [CLI, '--live', '-', '--json', '--address', address]);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text) => { out += text; });
    const done = new Promise((resolve, reject) => child.once('close', resolve).once('error', reject));
    child.stdin.end(fs.readFileSync(PCM));
    assert.equal(await done, 0);
    const lines = out.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(lines[0].backend, 'local');
    const finals = lines.flatMap((line) => line.results ?? []).filter((result) => result.is_final);
    assertWordsInOrder(finals.map((result) => result.text).join(' '), 'CLI --live - --json');
  });
});
