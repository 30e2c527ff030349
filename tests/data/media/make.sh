#!/usr/bin/env bash
# How the committed video streams of the test corpus were made (tests/media_corpus.py
# wraps them in DICOM at test time). Needs Debian's ffmpeg (libx264, libx265); the
# tests themselves do not: rerun this only to change the streams.
set -euo pipefail
cd "$(dirname "$0")"
common=(-hide_banner -loglevel error -y -f lavfi)
# H.264 in an MP4 container (faststart: the index first, so a browser can play it while
# it arrives): MPEG-4 AVC/H.264 High Profile / Level 4.1, 1.2.840.10008.1.2.4.102.
ffmpeg "${common[@]}" -i testsrc2=size=160x120:rate=10:duration=3 -c:v libx264 \
    -profile:v baseline -pix_fmt yuv420p -movflags +faststart -an avc.mp4
# HEVC Main in an MP4 container: 1.2.840.10008.1.2.4.107.
ffmpeg "${common[@]}" -i testsrc2=size=160x120:rate=10:duration=3 -c:v libx265 -tag:v hvc1 \
    -pix_fmt yuv420p -movflags +faststart -an -x265-params log-level=error hevc.mp4
# MPEG-2 Main Profile / Main Level in a program stream: 1.2.840.10008.1.2.4.100.
ffmpeg "${common[@]}" -i testsrc2=size=160x128:rate=25:duration=2 -c:v mpeg2video -b:v 150k \
    -pix_fmt yuv420p -an -f mpeg mpeg2.mpg
