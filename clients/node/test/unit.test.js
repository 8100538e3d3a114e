// Tests that need no server: error decoding, stream backpressure, JSON output, CLI usage.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';

import grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

import {
  STATUS_DETAILS_KEY,
  TranscribeError,
  VENDORED_PROTO_ROOT,
  decodeStatusDetails,
  durationToJson,
  toTranscribeError,
  transcribeStream,
  transcriptToJson,
} from '../lib/client.js';

const run = promisify(execFile);
const NODE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(NODE_DIR, 'bin', 'transcribe.js');
const FLAC = path.resolve(NODE_DIR, '..', '..', 'tests', 'data', 'speech_en.flac');

function statusRoot() {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : path.join(VENDORED_PROTO_ROOT, target));
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
  return root;
}

function packAny(root, typeName, object) {
  const type = root.lookupType(typeName);
  return { type_url: `type.googleapis.com/${typeName}`, value: type.encode(type.fromObject(object)).finish() };
}

function encodedStatus() {
  const root = statusRoot();
  const Status = root.lookupType('google.rpc.Status');
  return Buffer.from(Status.encode(Status.fromObject({
    code: grpc.status.INVALID_ARGUMENT,
    message: 'the transcription config is invalid',
    details: [
      packAny(root, 'google.rpc.DebugInfo', { detail: 'an unknown-to-the-client detail is skipped' }),
      packAny(root, 'google.rpc.ErrorInfo', { reason: 'INVALID_CONFIG', domain: 'transcribe.v1', metadata: { field: 'config.temperature' } }),
      packAny(root, 'google.rpc.BadRequest', { fieldViolations: [{ field: 'config.temperature', description: 'must be between 0 and 1' }] }),
      packAny(root, 'google.rpc.RetryInfo', { retryDelay: { seconds: 1, nanos: 500_000_000 } }),
    ],
  })).finish());
}

test('decodeStatusDetails reads ErrorInfo, BadRequest and RetryInfo', () => {
  const decoded = decodeStatusDetails(encodedStatus());
  assert.equal(decoded.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(decoded.reason, 'INVALID_CONFIG');
  assert.equal(decoded.domain, 'transcribe.v1');
  assert.deepEqual(decoded.metadata, { field: 'config.temperature' });
  assert.deepEqual(decoded.fieldViolations, [{ field: 'config.temperature', description: 'must be between 0 and 1' }]);
  assert.equal(decoded.retryDelaySeconds, 1.5);
});

test('decodeStatusDetails returns null for a malformed trailer', () => {
  assert.equal(decodeStatusDetails(Buffer.from([0x0a, 0xff, 0xff])), null);
});

test('toTranscribeError builds CODE: message [REASON] from a ServiceError', () => {
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_KEY, encodedStatus());
  const error = toTranscribeError(Object.assign(new Error('3 INVALID_ARGUMENT: x'), { code: 3, details: 'the transcription config is invalid', metadata }));
  assert.ok(error instanceof TranscribeError);
  assert.equal(String(error), 'INVALID_ARGUMENT: the transcription config is invalid [INVALID_CONFIG]');
  assert.equal(error.exitCode, 67);
  const bare = toTranscribeError(Object.assign(new Error('14 UNAVAILABLE: down'), { code: 14, details: 'down', metadata: new grpc.Metadata() }));
  assert.equal(String(bare), 'UNAVAILABLE: down');
  assert.equal(bare.reason, '');
  assert.equal(bare.exitCode, 78);
});

test('durations render as proto3 JSON', () => {
  assert.equal(durationToJson({ seconds: '7', nanos: 110_000_000 }), '7.110s');
  assert.equal(durationToJson({ seconds: '0', nanos: 0 }), '0s');
  assert.equal(durationToJson({ seconds: '1', nanos: 500_000 }), '1.000500s');
  assert.equal(durationToJson({ seconds: '2', nanos: 5 }), '2.000000005s');
  const json = transcriptToJson({
    text: 'hi', languageCode: 'en', languageProbability: 0, audioDuration: { seconds: '3', nanos: 0 }, backend: 'BACKEND_LOCAL', model: 'tiny.en',
    segments: [{ startOffset: { seconds: '0', nanos: 0 }, endOffset: { seconds: '1', nanos: 250_000_000 }, text: 'hi', words: [], averageLogProbability: 0, noSpeechProbability: 0 }],
  });
  assert.deepEqual(Object.keys(json), ['text', 'languageCode', 'languageProbability', 'audioDuration', 'segments', 'backend', 'model']);
  assert.equal(json.audioDuration, '3s');
  assert.equal(json.segments[0].endOffset, '1.250s');
});

/** A fake client whose stream keeps at most 2 messages buffered and takes each slowly. */
function slowClient() {
  const received = [];
  const client = {
    metadata: () => new grpc.Metadata(),
    callOptions: () => ({ deadline: new Date(Date.now() + 10_000) }),
    service: {
      TranscribeStream(_metadata, _options, callback) {
        const call = new Writable({
          objectMode: true,
          highWaterMark: 2,
          write(message, _encoding, done) {
            received.push(message);
            setTimeout(done, 1);
          },
          final(done) {
            done();
            const audio = Buffer.concat(received.slice(1).map((message) => message.audioContent));
            callback(null, { transcript: { text: `${audio.length} bytes` } });
          },
        });
        call.cancel = () => call.destroy();
        return call;
      },
    },
  };
  return { client, received };
}

test('transcribeStream sends the config first, then every byte, pausing the file on backpressure', async () => {
  const { client, received } = slowClient();
  const input = fs.createReadStream(FLAC, { highWaterMark: 4096 });
  let pauses = 0;
  input.on('pause', () => { pauses += 1; });
  const transcript = await transcribeStream(client, input, { languageCode: 'en' }, { chunkSize: 4096 });
  const expected = fs.readFileSync(FLAC);
  assert.equal(transcript.text, `${expected.length} bytes`);
  assert.deepEqual(received[0], { config: { languageCode: 'en' } });
  assert.ok(received.slice(1).every((message) => message.audioContent.length <= 4096 && !('config' in message)));
  assert.ok(Buffer.concat(received.slice(1).map((message) => message.audioContent)).equals(expected));
  assert.ok(pauses > 0, 'the file was never paused for drain');
});

test('transcribeStream rejects with the local error for a missing file', async () => {
  const { client } = slowClient();
  await assert.rejects(transcribeStream(client, path.join(NODE_DIR, 'no-such-file.wav')), { code: 'ENOENT' });
});

test('the CLI exits 1 for a missing file and 2 for a usage error, without a server', async () => {
  await assert.rejects(run(process.execPath, [CLI, '--address', '127.0.0.1:9', 'no-such-file.wav']), (error) => {
    assert.equal(error.code, 1);
    assert.match(error.stderr, /no-such-file\.wav: no such file or directory/);
    return true;
  });
  await assert.rejects(run(process.execPath, [CLI]), { code: 2 });
  await assert.rejects(run(process.execPath, [CLI, '--timeout', '-1', 'x.wav']), { code: 2 });
  const help = await run(process.execPath, [CLI, '--help']);
  assert.match(help.stdout, /^usage: transcribe /);
});
