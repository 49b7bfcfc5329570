#!/usr/bin/env bash
# Debian/Ubuntu packages Fabula needs: fonts that cover every script the books are written in, poppler (PDF checks),
# Chromium for the browser tests, espeak-ng (the offline voice), ffmpeg (audio), epubcheck (EPUB checks), and the
# PostgreSQL and Redis servers the scale-out tests start on loopback. Installs only what is missing; elsewhere it says what to install.
set -euo pipefail
packages=(fonts-dejavu-core fonts-noto-core fonts-nanum fonts-ipafont-gothic fonts-wqy-zenhei poppler-utils chromium espeak-ng ffmpeg epubcheck postgresql redis-server)
missing=()
if ! command -v dpkg >/dev/null 2>&1; then
  echo "Not a Debian-like system: install fonts (DejaVu, Noto, Nanum, IPA Gothic, WenQuanYi Zen Hei), poppler-utils and Chromium yourself." >&2
  exit 0
fi
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
