// Uploads one file to the service with tus-js-client (the pinned one in package.json), as a
// browser app or a Node script would: chunked, retried, optionally in parallel pieces.
// In: BASE_URL, TOKEN, FILE_PATH, METADATA (JSON), CHUNK_SIZE, PARALLEL, RETRY_DELAYS (JSON).
// Out: a JSON line with the upload URL as soon as it is known, then one with the upload URL,
// the chunks acknowledged and the error, if any.
import { readFileSync } from 'node:fs';
import * as tus from 'tus-js-client';

const { BASE_URL, TOKEN, FILE_PATH, METADATA, CHUNK_SIZE, PARALLEL, RETRY_DELAYS } = process.env;
const file = readFileSync(FILE_PATH);
let chunks = 0;

const result = await new Promise((resolve) => {
  const upload = new tus.Upload(file, {
    endpoint: `${BASE_URL}/api/v1/drf/media/tus/`,
    headers: { Authorization: `Bearer ${TOKEN}` },
    metadata: JSON.parse(METADATA),
    chunkSize: Number(CHUNK_SIZE),
    parallelUploads: Number(PARALLEL || 1),
    retryDelays: RETRY_DELAYS ? JSON.parse(RETRY_DELAYS) : [0, 200, 500, 1000],
    onUploadUrlAvailable: () => console.log(JSON.stringify({ created: upload.url })),
    onChunkComplete: () => { chunks += 1; },
    onError: (error) => resolve({ error: String(error) }),
    onSuccess: () => resolve({ url: upload.url }),
  });
  upload.start();
});
console.log(JSON.stringify({ ...result, chunks }));
