"""What flows through a run: typed params, `${{ }}` references, step outputs and CEL conditions.

Pure like the core (no I/O, no clock, no logging), but it parses JSON and CEL, which the core
itself does not import: the shell calls it to check a definition at apply, to build the core's
steps (implied needs, what each step consumes), to check a finished step's outputs, to evaluate
conditions and to render a step; the core receives its verdicts as values.
"""
