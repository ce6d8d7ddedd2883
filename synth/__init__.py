"""Synthetic DUBU-like record streams for the backbone (issue 6).

    python -m synth --seed 1 --years 1 --municipalities 101,657,751 --start 2025-11-01 --out FILE.ndjson
        [--scale 1.0] [--late-share 0.03] [--warmup-years 2] [--until ISO-INSTANT] [--manifest M.json]
    python -m synth.stats FILE.ndjson --start 2025-11-01        what a file looks like vs the targets
    make demo                                                   services + a year of data (deploy/demo.sh)

- `synth.municipalities`: the 98 kommunekoder, names, approximate child populations (sizes).
- `synth.targets`: the shares, the funnel and the tolerances the generated data is held to.
- `synth.generator`: the deterministic simulation (`Config`, `write`, `municipality_lines`, ...).
- `synth.stats`: measuring a stream; `synth.clock`: Copenhagen time helpers; `synth.demo`: demo glue.

`--out` with `{municipality}` writes one file per municipality, ready for
`python -m services.intake import FILE --municipality M`. Every record is made up (CPR numbers
included: valid dates and century digits, no real persons intended).
"""
