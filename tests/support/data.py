"""The files under ``tests/data`` (see its README.md for what each is and its licence)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
HL7_SAMPLES = DATA / "hl7-samples"
KHANZA_SCHEMA = DATA / "khanza_schema.sql"


def hl7_samples() -> list[Path]:
    """Every sample message, by name (16: their NOTICE.md lists them)."""
    found = sorted(HL7_SAMPLES.glob("*.hl7"))
    assert found, f"no HL7 samples in {HL7_SAMPLES}: the repository's test data is missing"
    return found
