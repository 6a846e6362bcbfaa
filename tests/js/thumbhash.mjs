// The reference ThumbHash (npm `thumbhash`, pinned in package.json), for the placeholder tests.
// Reads {"encode": [{w, h, rgba: <base64>}], "decode": [<base64 hash>]} on stdin; prints
// {"encoded": [{thumbhash, color}], "decoded": [{w, h, rgba: <base64>}]} on stdout.
import { readFileSync } from 'node:fs';
import { rgbaToThumbHash, thumbHashToAverageRGBA, thumbHashToRGBA } from 'thumbhash';

const request = JSON.parse(readFileSync(0, 'utf8'));
const hex = (value) => Math.round(255 * value).toString(16).padStart(2, '0');

const encoded = (request.encode || []).map(({ w, h, rgba }) => {
  const hash = rgbaToThumbHash(w, h, Buffer.from(rgba, 'base64'));
  const { r, g, b } = thumbHashToAverageRGBA(hash);
  return { thumbhash: Buffer.from(hash).toString('base64'), color: `#${hex(r)}${hex(g)}${hex(b)}` };
});
const decoded = (request.decode || []).map((text) => {
  const { w, h, rgba } = thumbHashToRGBA(Buffer.from(text, 'base64'));
  return { w, h, rgba: Buffer.from(rgba).toString('base64') };
});
console.log(JSON.stringify({ encoded, decoded }));
