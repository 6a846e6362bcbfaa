#!/usr/bin/env bash
# Installs the Debian packages mediasvc needs (ffmpeg, libvips, libmagic; nginx and chromium
# for the proxy and browser tests) when missing.
# As root it uses apt-get; otherwise it says what to install and fails.
set -euo pipefail

missing=()
{ command -v ffmpeg && command -v ffprobe; } >/dev/null 2>&1 || missing+=(ffmpeg)
ldconfig -p 2>/dev/null | grep -q 'libvips.so.42' || missing+=(libvips)
ldconfig -p 2>/dev/null | grep -q 'libmagic.so.1' || missing+=(libmagic1)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/chromium ] || missing+=(chromium)  # the browser tests (Playwright drives it)
# ICC profiles (Adobe RGB) the colour-management tests convert from.
[ -f /usr/share/color/icc/colord/AdobeRGB1998.icc ] || missing+=(colord-data)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "mediasvc needs these system packages: ${missing[*]}" >&2
  echo "On Debian/Ubuntu: sudo apt-get install ffmpeg libvips42 libmagic1 nginx chromium colord-data" >&2
  exit 1
fi

echo "Installing system packages for: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
packages=()
for name in "${missing[@]}"; do
  if [ "$name" = libvips ]; then
    # Debian 13 renamed the library package in the 64-bit time_t transition.
    if apt-cache show libvips42 >/dev/null 2>&1; then name=libvips42; else name=libvips42t64; fi
  fi
  packages+=("$name")
done
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
