#!/usr/bin/env node
// transcribe: transcribe an audio file with a transcribe.v1.TranscribeService server.

import fs from 'node:fs';
import { parseArgs } from 'node:util';

import { DEFAULT_ADDRESS, TranscribeError, createClient, transcribeFile, transcribeStream, transcriptToJson } from '../lib/client.js';

const PROG = 'transcribe';
const EXIT_OK = 0;
const EXIT_LOCAL_ERROR = 1;
const EXIT_USAGE = 2;

const USAGE = `usage: ${PROG} [--address HOST:PORT] [--stream] [--language L] [--model M] [--json] FILE

Transcribe FILE (or - for standard input, always streamed) and print the text.

options:
  --address HOST:PORT  server address or gRPC target (default: $TRANSCRIBE_ADDRESS or ${DEFAULT_ADDRESS})
  --stream             upload in chunks with TranscribeStream instead of one message
  --language L         spoken language as a BCP-47 tag, e.g. en (default: detect)
  --model M            model name as listed by ListModels (default: the backend's)
  --words              request word timestamps (shown with --json)
  --json               print the whole transcript as proto3 JSON
  --timeout SECONDS    deadline of the call (default: 300)
  --chunk-size BYTES   chunk size of --stream uploads (default: 262144)
  --token TOKEN        bearer token (default: $TRANSCRIBE_TOKEN)
  --tls                use TLS with the system's root certificates
  --ca-cert FILE       PEM root certificates that verify the server (implies --tls)
  -h, --help           show this help

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
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(error.message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  if (positionals.length !== 1) throw new UsageError(positionals.length ? 'expected one FILE' : 'missing FILE');
  return {
    file: positionals[0],
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
