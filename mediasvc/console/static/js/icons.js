// Icons as inline SVG (24x24 outlines drawn with currentColor), made from constant markup.

const PATHS = {
  image: 'M4 5h16v14H4z M4 16l5-5 4 4 3-3 4 4 M15 9.5a1.5 1.5 0 1 0 0-.01',
  video: 'M3 6h13v12H3z M16 10l5-3v10l-5-3',
  audio: 'M9 18V6l11-2v12 M9 18a3 3 0 1 1-3-3 3 3 0 0 1 3 3 M20 16a3 3 0 1 1-3-3 3 3 0 0 1 3 3',
  document: 'M6 3h9l4 4v14H6z M15 3v4h4 M9 12h7 M9 16h7',
  upload: 'M12 16V4 M7 9l5-5 5 5 M4 16v4h16v-4',
  folder: 'M3 6h6l2 2h10v11H3z',
  close: 'M6 6l12 12 M18 6L6 18',
  star: 'M12 3l2.7 5.6 6.1.9-4.4 4.3 1 6.1L12 17l-5.4 2.9 1-6.1-4.4-4.3 6.1-.9z',
  pause: 'M8 5v14 M16 5v14',
  play: 'M7 4l13 8-13 8z',
  trash: 'M4 7h16 M9 7V4h6v3 M6 7l1 13h10l1-13',
  refresh: 'M20 11a8 8 0 1 0-2.3 5.7 M20 5v6h-6',
  warning: 'M12 3l10 18H2z M12 10v5 M12 18v.01',
  check: 'M5 12l5 5 9-10',
};

const NS = 'http://www.w3.org/2000/svg';

/** An <svg> icon; decorative (aria-hidden) unless given a label. */
export function icon(name, label) {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `icon icon-${name}`);
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '1.8');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('focusable', 'false');
  if (label) {
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
  } else {
    svg.setAttribute('aria-hidden', 'true');
  }
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', PATHS[name] || PATHS.document);
  svg.append(path);
  return svg;
}
