// A small Node.js client of transcribe.v1.TranscribeService.
//
// The contract is loaded at run time from the repository's protos/ folder
// with @grpc/proto-loader; nothing is generated. Every call has a deadline,
// and failed calls reject with a TranscribeError that carries the gRPC code
// and the google.rpc.ErrorInfo reason from the grpc-status-details-bin trailer.

import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The repository's contract folder (clients/node/../../protos). */
export const PROTO_ROOT = path.resolve(HERE, '..', '..', '..', 'protos');
/** Protos this client vendors: google.rpc status and details, grpc.health.v1. */
export const VENDORED_PROTO_ROOT = path.resolve(HERE, '..', 'protos');

export const DEFAULT_ADDRESS = 'localhost:50051';
export const DEFAULT_DEADLINE_SECONDS = 300;
export const DEFAULT_CHUNK_SIZE = 256 * 1024;
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
export const ERROR_DOMAIN = 'transcribe.v1';
/** Largest message either way: the server accepts 25 MiB of audio plus the config by default. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Exit code of a failed call: 64 + the numeric gRPC status code (grpcurl's convention). */
export const EXIT_RPC_BASE = 64;

export const LOADER_OPTIONS = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  // google/protobuf/duration.proto and any.proto are bundled with protobufjs,
  // which proto-loader uses; these folders hold everything else.
  includeDirs: [PROTO_ROOT, VENDORED_PROTO_ROOT],
});

const SERVICE_PROTO = 'transcribe/v1/transcribe_service.proto';
const HEALTH_PROTO = 'grpc/health/v1/health.proto';
const STATUS_PROTOS = ['google/rpc/status.proto', 'google/rpc/error_details.proto'];

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

let packages = null;
let definition = null;
let statusRoot = null;

/** The loaded gRPC packages: { transcribe: {v1}, grpc: {health: {v1}} }, loaded once. */
export function loadPackages() {
  if (packages === null) {
    definition = protoLoader.loadSync([SERVICE_PROTO, HEALTH_PROTO], { ...LOADER_OPTIONS });
    packages = grpc.loadPackageDefinition(definition);
  }
  return packages;
}

function loadStatusRoot() {
  if (statusRoot === null) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => {
      // Well-known google/protobuf types are bundled with protobufjs.
      if (target.startsWith('google/protobuf/')) return target;
      return path.isAbsolute(target) ? target : path.join(VENDORED_PROTO_ROOT, target);
    };
    root.loadSync(STATUS_PROTOS, { keepCase: false });
    root.resolveAll();
    statusRoot = root;
  }
  return statusRoot;
}

/** A failed call: the gRPC status plus the ErrorInfo, BadRequest and RetryInfo details, when present. */
export class TranscribeError extends Error {
  constructor(code, message, { reason = '', domain = '', metadata = {}, fieldViolations = [], retryDelaySeconds = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'TranscribeError';
    this.code = code;
    this.codeName = CODE_NAMES[code] ?? 'UNKNOWN';
    this.details = message;
    this.reason = reason;
    this.domain = domain;
    this.metadata = metadata;
    this.fieldViolations = fieldViolations;
    this.retryDelaySeconds = retryDelaySeconds;
  }

  /** 64 + the numeric status code, as grpcurl and the Python CLI exit. */
  get exitCode() {
    return EXIT_RPC_BASE + this.code;
  }

  /** `CODE: message [REASON]` */
  toString() {
    const text = `${this.codeName}: ${this.details}`;
    return this.reason ? `${text} [${this.reason}]` : text;
  }
}

/** Decode a google.rpc.Status (as bytes) into the fields of a TranscribeError; null when malformed. */
export function decodeStatusDetails(bytes) {
  const root = loadStatusRoot();
  let status;
  try {
    status = root.lookupType('google.rpc.Status').decode(bytes);
  } catch {
    return null; // a malformed trailer must not hide the real error
  }
  const result = { code: status.code, message: status.message, reason: '', domain: '', metadata: {}, fieldViolations: [], retryDelaySeconds: null };
  for (const any of status.details ?? []) {
    // protobufjs's bundled Any keeps the proto name type_url.
    const typeName = String(any.typeUrl ?? any.type_url ?? '').split('/').pop();
    let type;
    try {
      type = root.lookupType(typeName);
    } catch {
      continue; // a detail type this client does not know
    }
    let detail;
    try {
      detail = type.decode(any.value);
    } catch {
      continue;
    }
    if (typeName === 'google.rpc.ErrorInfo' && !result.reason) {
      result.reason = detail.reason;
      result.domain = detail.domain;
      result.metadata = { ...detail.metadata };
    } else if (typeName === 'google.rpc.BadRequest') {
      for (const violation of detail.fieldViolations ?? []) {
        result.fieldViolations.push({ field: violation.field, description: violation.description });
      }
    } else if (typeName === 'google.rpc.RetryInfo' && detail.retryDelay) {
      result.retryDelaySeconds = Number(detail.retryDelay.seconds ?? 0) + (detail.retryDelay.nanos ?? 0) / 1e9;
    }
  }
  return result;
}

/** Convert a grpc-js ServiceError into a TranscribeError (other errors are returned unchanged). */
export function toTranscribeError(error) {
  if (error instanceof TranscribeError || typeof error?.code !== 'number' || !('details' in error)) {
    return error;
  }
  let decoded = null;
  const values = error.metadata?.get?.(STATUS_DETAILS_KEY) ?? [];
  for (const value of values) {
    if (Buffer.isBuffer(value)) {
      decoded = decodeStatusDetails(value);
      if (decoded) break;
    }
  }
  return new TranscribeError(error.code, error.details ?? '', { ...(decoded ?? {}), cause: error });
}

/**
 * Connect to a server. The channel connects lazily, on the first call.
 *
 * @param {string} [address] HOST:PORT or any gRPC target (dns:///host:port, unix:/path).
 * @param {object} [options]
 * @param {number} [options.deadlineSeconds] default deadline of every call (300).
 * @param {string} [options.token] bearer token sent as `authorization` metadata.
 * @param {boolean} [options.tls] use TLS with the system's roots (implied by rootCerts).
 * @param {Buffer} [options.rootCerts] PEM roots that verify the server.
 * @param {Buffer} [options.privateKey] PEM client key (mutual TLS, with certChain).
 * @param {Buffer} [options.certChain] PEM client certificate chain (mutual TLS).
 * @param {object} [options.channelOptions] extra grpc-js channel options.
 */
export function createClient(address = DEFAULT_ADDRESS, options = {}) {
  const { deadlineSeconds = DEFAULT_DEADLINE_SECONDS, token, tls = false, rootCerts, privateKey, certChain, channelOptions = {} } = options;
  if (!(deadlineSeconds > 0)) throw new RangeError(`deadlineSeconds must be positive, got ${deadlineSeconds}`);
  if (Boolean(privateKey) !== Boolean(certChain)) throw new TypeError('privateKey and certChain must be given together');
  const credentials = tls || rootCerts || privateKey
    ? grpc.credentials.createSsl(rootCerts ?? null, privateKey ?? null, certChain ?? null)
    : grpc.credentials.createInsecure();
  const settings = {
    'grpc.max_send_message_length': DEFAULT_MAX_MESSAGE_BYTES,
    'grpc.max_receive_message_length': DEFAULT_MAX_MESSAGE_BYTES,
    // Ping while a long transcription sends no data, like the Python client (the server allows every 10 s).
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.primary_user_agent': 'transcribe-client-node/0.1',
    ...channelOptions,
  };
  const pkgs = loadPackages();
  const service = new pkgs.transcribe.v1.TranscribeService(address, credentials, settings);
  // Share the transcribe client's channel so one connection serves every call.
  const healthClient = new pkgs.grpc.health.v1.Health(address, credentials, { ...settings, channelOverride: service.getChannel() });
  return {
    address,
    deadlineSeconds,
    service,
    healthClient,
    metadata() {
      const metadata = new grpc.Metadata();
      if (token) metadata.set('authorization', `Bearer ${token}`);
      return metadata;
    },
    callOptions(seconds) {
      const limit = seconds ?? deadlineSeconds;
      if (!(limit > 0)) throw new RangeError(`deadlineSeconds must be positive, got ${limit}`);
      return { deadline: new Date(Date.now() + limit * 1000) };
    },
    close() {
      healthClient.close();
      service.close();
    },
  };
}

function unary(client, method, target, request, deadlineSeconds) {
  return new Promise((resolve, reject) => {
    target[method](request, client.metadata(), client.callOptions(deadlineSeconds), (error, response) => {
      if (error) reject(toTranscribeError(error));
      else resolve(response);
    });
  });
}

/** Transcribe a whole file sent in one message (Transcribe). Resolves to the Transcript. */
export async function transcribeFile(client, filePath, config = {}, { deadlineSeconds } = {}) {
  const content = await fs.promises.readFile(filePath);
  const response = await unary(client, 'Transcribe', client.service, { config, content }, deadlineSeconds);
  return response.transcript;
}

/**
 * Transcribe a file uploaded in chunks (TranscribeStream): the config first,
 * then chunks read with fs.createReadStream, pausing the file while gRPC's
 * send buffer is full (write() returned false) until 'drain'.
 *
 * @param {string|import('node:stream').Readable} source a path, or a readable byte stream.
 * @returns {Promise<object>} the Transcript.
 */
export function transcribeStream(client, source, config = {}, { chunkSize = DEFAULT_CHUNK_SIZE, deadlineSeconds, onProgress } = {}) {
  if (!(Number.isInteger(chunkSize) && chunkSize > 0)) {
    return Promise.reject(new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`));
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    let sent = 0;
    let waiting = false; // paused until gRPC's send buffer drains
    const input = typeof source === 'string' ? fs.createReadStream(source, { highWaterMark: chunkSize }) : source;
    const finish = (error, value) => {
      if (settled) return;
      settled = true;
      if (error) reject(error);
      else resolve(value);
    };
    let call;
    try {
      call = client.service.TranscribeStream(client.metadata(), client.callOptions(deadlineSeconds), (error, response) => {
        if (error) {
          input.destroy();
          finish(toTranscribeError(error));
        } else {
          finish(null, response.transcript);
        }
      });
    } catch (error) {
      input.destroy();
      finish(error);
      return;
    }
    input.on('error', (error) => {
      // A local read error: abandon the call and report the file's error.
      finish(error);
      call.cancel();
    });
    const writeChunk = (chunk) => {
      // A Readable in object mode or with an encoding may hand over strings.
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      for (let offset = 0; offset < bytes.length; offset += chunkSize) {
        const piece = bytes.subarray(offset, offset + chunkSize);
        sent += piece.length;
        if (!call.write({ audioContent: piece }) && !waiting) {
          waiting = true;
          input.pause();
          call.once('drain', () => {
            waiting = false;
            input.resume();
          });
        }
      }
      onProgress?.(sent);
    };
    call.write({ config });
    input.on('data', writeChunk);
    input.on('end', () => call.end());
  });
}

/** Audio framings of live_config.audioFormat, by short name. */
export const LIVE_AUDIO_FORMATS = Object.freeze({
  linear16: 'LIVE_AUDIO_FORMAT_LINEAR16',
  'webm-opus': 'LIVE_AUDIO_FORMAT_WEBM_OPUS',
  'ogg-opus': 'LIVE_AUDIO_FORMAT_OGG_OPUS',
});
/** How much audio a live caller should send per message (seconds). */
export const LIVE_CHUNK_SECONDS = 0.1;

function durationOf(seconds, name) {
  if (!(Number.isFinite(seconds) && seconds >= 0)) throw new RangeError(`${name} must be zero or more seconds, got ${seconds}`);
  const nanos = Math.round(seconds * 1e9);
  return { seconds: String(Math.floor(nanos / 1e9)), nanos: nanos % 1e9 };
}

/**
 * The LiveConfig message of a live call (see live()). The sample rate and
 * channel count are sent only for LINEAR16; timeouts are in seconds.
 */
export function liveConfig({
  config = {},
  audioFormat = 'linear16',
  sampleRateHertz = 16000,
  audioChannelCount = 1,
  interimResults = true,
  voiceActivityEvents = false,
  speechStartTimeoutSeconds,
  speechEndTimeoutSeconds,
} = {}) {
  const format = LIVE_AUDIO_FORMATS[audioFormat] ?? (Object.values(LIVE_AUDIO_FORMATS).includes(audioFormat) ? audioFormat : null);
  if (format === null) throw new RangeError(`unknown audioFormat ${JSON.stringify(audioFormat)}; expected one of ${Object.keys(LIVE_AUDIO_FORMATS).join(', ')}`);
  const message = { config, interimResults, voiceActivityEvents, audioFormat: format };
  if (format === LIVE_AUDIO_FORMATS.linear16) {
    message.sampleRateHertz = sampleRateHertz;
    message.audioChannelCount = audioChannelCount;
  }
  if (speechStartTimeoutSeconds !== undefined) message.speechStartTimeout = durationOf(speechStartTimeoutSeconds, 'speechStartTimeoutSeconds');
  if (speechEndTimeoutSeconds !== undefined) message.speechEndTimeout = durationOf(speechEndTimeoutSeconds, 'speechEndTimeoutSeconds');
  return message;
}

/**
 * Live transcription (TranscribeLive): send audio while it is spoken and get
 * results as they are recognized.
 *
 *   for await (const response of live(client, chunks, { config: { languageCode: 'en' } })) {
 *     for (const result of response.results) console.log(result.isFinal, result.text);
 *   }
 *
 * chunks is any async or sync iterable of Buffers (a Readable such as
 * process.stdin works): LINEAR16 is 16-bit little-endian PCM at
 * sampleRateHertz with audioChannelCount channels interleaved, about 100 ms
 * per chunk. It is read as fast as it yields (the caller sets the pace) and
 * paused while gRPC's send buffer is full; when it ends the stream is
 * half-closed and the server sends the last final result.
 *
 * Returns an async generator of TranscribeLiveResponse objects; the call
 * starts on the first next(). Leaving a for-await loop early (return()) or
 * aborting options.signal cancels the call at once. A live call has no
 * deadline unless deadlineSeconds is given: it lasts as long as its audio.
 * A failed call throws a TranscribeError; a chunk source that throws cancels
 * the call and its error is thrown as it is.
 *
 * @param {object} client from createClient().
 * @param {AsyncIterable<Uint8Array>|Iterable<Uint8Array>} chunks the audio, in order.
 * @param {object} [options] liveConfig() options (config, audioFormat, sampleRateHertz,
 *   audioChannelCount, interimResults, voiceActivityEvents, speechStartTimeoutSeconds,
 *   speechEndTimeoutSeconds) plus deadlineSeconds and signal (an AbortSignal).
 */
export async function* live(client, chunks, options = {}) {
  const { deadlineSeconds, signal, ...configOptions } = options;
  const request = { liveConfig: liveConfig(configOptions) };
  const callOptions = deadlineSeconds === undefined ? {} : client.callOptions(deadlineSeconds);
  signal?.throwIfAborted();
  const call = client.service.TranscribeLive(client.metadata(), callOptions);
  call.on('error', () => {}); // the status is read from the response iterator; never an unhandled 'error'
  const stop = new AbortController(); // ends the writer once the call is over
  let sourceError = null;
  const cancel = () => call.cancel();
  signal?.addEventListener('abort', cancel, { once: true });
  const write = async (message) => {
    if (!call.write(message)) await once(call, 'drain', { signal: stop.signal });
  };
  // Never awaited: the call's status, read below, decides how live() ends.
  (async () => {
    try {
      await write(request);
      for await (const chunk of chunks) {
        if (stop.signal.aborted) return;
        if (!(chunk instanceof Uint8Array)) throw new TypeError(`live audio chunks must be Buffers, got ${typeof chunk}`);
        if (chunk.length > 0) await write({ audioContent: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length) });
      }
      if (!stop.signal.aborted) call.end();
    } catch (error) {
      if (stop.signal.aborted) return; // the call ended first; its status is what counts
      sourceError = error;
      call.cancel();
    }
  })();
  try {
    for await (const response of call) yield response;
  } catch (error) {
    if (sourceError) throw sourceError;
    throw toTranscribeError(error);
  } finally {
    stop.abort();
    signal?.removeEventListener('abort', cancel);
    call.cancel(); // a no-op once the call has ended; frees the session when the caller stops early
  }
  if (sourceError) throw sourceError;
}

/**
 * Re-cut a stream of byte chunks (such as process.stdin, which hands over
 * whatever the pipe holds) into chunks of exactly `size` bytes; the last one
 * may be shorter.
 */
export async function* rechunk(source, size) {
  if (!(Number.isInteger(size) && size > 0)) throw new RangeError(`size must be a positive integer, got ${size}`);
  let pending = Buffer.alloc(0);
  for await (const chunk of source) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : Buffer.from(chunk);
    let offset = 0;
    for (; pending.length - offset >= size; offset += size) yield pending.subarray(offset, offset + size);
    pending = pending.subarray(offset);
  }
  if (pending.length) yield pending;
}

/**
 * Hold each chunk back until the moment its audio would have been spoken at
 * `speed` times real time (like a microphone, a chunk is released once its
 * last sample is "recorded"); speed 0 releases them at once. Aborting
 * `signal` ends the stream. `now` (milliseconds) and `sleep(ms, signal)` can
 * be replaced, by tests for instance.
 */
export async function* paced(chunks, { speed, bytesPerSecond, signal, now = () => performance.now(), sleep = defaultSleep }) {
  const start = now();
  let sent = 0;
  for await (const chunk of chunks) {
    if (signal?.aborted) return;
    sent += chunk.length;
    if (speed > 0) {
      const delay = start + (sent / bytesPerSecond / speed) * 1000 - now();
      if (delay > 0) {
        try {
          await sleep(delay, signal);
        } catch (error) {
          if (signal?.aborted) return;
          throw error;
        }
      }
    }
    yield chunk;
  }
}

function defaultSleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const aborted = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

/**
 * A TranscribeLiveResponse as plain data, the same lines as the Python CLI's
 * `live --format json`: results (text, is_final, stability, offsets in
 * seconds, language_code when known, words), voice_activity (type
 * 'speech_begin' or 'speech_end', offset in seconds), and backend and model
 * in the first response.
 */
export function liveResponseToJson(response) {
  const seconds = (duration) => Math.round(durationSeconds(duration) * 1000) / 1000;
  const round = (value) => Math.round((value ?? 0) * 1000) / 1000;
  const data = {};
  if (response.results?.length) {
    data.results = response.results.map((result) => {
      const item = {
        text: result.text,
        is_final: result.isFinal,
        stability: round(result.stability),
        start_offset: seconds(result.startOffset),
        end_offset: seconds(result.endOffset),
      };
      if (result.languageCode) item.language_code = result.languageCode;
      if (result.words?.length) {
        item.words = result.words.map((word) => ({
          word: word.word,
          start_offset: seconds(word.startOffset),
          end_offset: seconds(word.endOffset),
          probability: round(word.probability),
        }));
      }
      return item;
    });
  }
  if (response.voiceActivity) {
    const type = String(response.voiceActivity.type).replace('VOICE_ACTIVITY_EVENT_TYPE_', '').toLowerCase();
    data.voice_activity = { type, offset: seconds(response.voiceActivity.offset) };
  }
  if (response.backend && response.backend !== 'BACKEND_UNSPECIFIED') data.backend = response.backend.replace('BACKEND_', '').toLowerCase();
  if (response.model) data.model = response.model;
  return data;
}

/** The models the server can serve (ListModels). */
export async function listModels(client, { deadlineSeconds } = {}) {
  const response = await unary(client, 'ListModels', client.service, {}, deadlineSeconds);
  return response.models;
}

/** The serving status ('SERVING', 'NOT_SERVING', ...) of a service, or of the whole server (''). */
export async function health(client, service = '', { deadlineSeconds = 10 } = {}) {
  const response = await unary(client, 'Check', client.healthClient, { service }, deadlineSeconds);
  return response.status;
}

/** A google.protobuf.Duration object as seconds (a number). */
export function durationSeconds(duration) {
  if (!duration) return 0;
  return Number(duration.seconds ?? 0) + Number(duration.nanos ?? 0) / 1e9;
}

/** A google.protobuf.Duration object in proto3 JSON form, such as "7.110s". */
export function durationToJson(duration) {
  const seconds = BigInt(duration?.seconds ?? 0);
  const nanos = Number(duration?.nanos ?? 0);
  const negative = seconds < 0n || nanos < 0;
  const whole = (seconds < 0n ? -seconds : seconds).toString();
  let fraction = '';
  if (nanos !== 0) {
    const digits = String(Math.abs(nanos)).padStart(9, '0');
    fraction = '.' + (digits.endsWith('000000') ? digits.slice(0, 3) : digits.endsWith('000') ? digits.slice(0, 6) : digits);
  }
  return `${negative ? '-' : ''}${whole}${fraction}s`;
}

/**
 * A message object (as the client returns it) in proto3 JSON form: fields in
 * declaration order, every field without presence included, unset message
 * fields left out, durations as "1.5s". typeName is a full message name such
 * as "transcribe.v1.Transcript".
 */
export function messageToJson(typeName, message) {
  loadPackages();
  const type = definition[typeName]?.type;
  if (!type) throw new TypeError(`unknown message type ${typeName}`);
  if (typeName === 'google.protobuf.Duration') return durationToJson(message);
  const scope = typeName.slice(0, typeName.lastIndexOf('.'));
  const resolve = (name) => (definition[name] ? name : `${scope}.${name}`);
  const result = {};
  for (const field of type.field) {
    const value = message?.[field.name];
    if (value === null || value === undefined) continue;
    if (field.type === 'TYPE_MESSAGE') {
      const nested = resolve(field.typeName);
      result[field.name] = field.label === 'LABEL_REPEATED' ? value.map((item) => messageToJson(nested, item)) : messageToJson(nested, value);
    } else if (field.type === 'TYPE_BYTES') {
      result[field.name] = field.label === 'LABEL_REPEATED' ? value.map((item) => Buffer.from(item).toString('base64')) : Buffer.from(value).toString('base64');
    } else {
      result[field.name] = value;
    }
  }
  return result;
}

/** A Transcript in proto3 JSON form (see messageToJson). */
export function transcriptToJson(transcript) {
  return messageToJson('transcribe.v1.Transcript', transcript);
}
