#!/usr/bin/env python3
"""Writes a large boxr.kdl for the `boxr check` benchmark: IMAGES images with STEPS steps in all
(10 per image by default), mixing every instruction kind, args, and `copy from=` edges.

usage: gen-manifest.py [IMAGES] [STEPS_PER_IMAGE] > big.kdl
"""
import sys

images = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
per = int(sys.argv[2]) if len(sys.argv) > 2 else 10

out = ['arg "VERSION" default="1.2.3"', 'arg "MODE" default="release"', ""]
kinds = [
    lambda i, j: f'    env "STEP_{j}" "value ${{VERSION}} {i}"',
    lambda i, j: f'    run "make -j2 MODE=${{MODE}} target-{i}-{j} && echo done"',
    lambda i, j: f'    workdir "/src/{i}/{j}"',
    lambda i, j: f'    run "cc" "-O2" "-o" "/out/{i}-{j}" "main.c" {{\n        cache "/root/.cache" id="cc"\n        env "CFLAGS" "-O2"\n    }}',
    lambda i, j: f'    label "org.example.step{j}" "{i}"',
    lambda i, j: f'    expose {1000 + j} "{2000 + j}/udp"',
    lambda i, j: f'    user "{1000 + j}:{1000 + j}"',
    lambda i, j: f'    copy "/out/{i}" to="/opt/{i}-{j}/" from="img{max(i - 1, 0)}" chmod="0755"'
    if i > 0
    else f'    env PATH="/usr/bin:/bin" N="{j}"',
    lambda i, j: f'    cmd "--serve" "--port={8000 + j}"',
]
for i in range(images):
    out.append(f'image "img{i}" {{')
    out.append('    from "scratch"' if i == 0 else f'    from "img{i - 1}"' if i % 10 else '    from "img0"')
    for j in range(per - 1):
        out.append(kinds[(i + j) % len(kinds)](i, j))
    out.append("}")
print("\n".join(out))
