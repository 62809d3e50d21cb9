"""WAV helpers and the `say` subcommand (in-process and through the installed entry point)."""

from __future__ import annotations

import struct
import subprocess
import sys
import wave

import pytest

from orpheus_tts import say
from orpheus_tts.cli import main as cli_main
from orpheus_tts.wav import STREAMING_WAV_HEADER, WavWriter, pcm_to_wav, wav_header, write_wav
from tests.support.fake_server import Behaviour

PCM = struct.pack("<4h", 1, -1, 32767, -32768)


def read_wav(path) -> tuple[tuple[int, int, int], bytes]:
    with wave.open(str(path), "rb") as wf:
        return (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()), wf.readframes(10**9)


def test_wav_header_matches_the_wave_module(tmp_path):
    path = tmp_path / "ref.wav"
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(24000)
        wf.writeframes(PCM)
    assert pcm_to_wav(PCM) == path.read_bytes()
    assert wav_header(len(PCM)) == path.read_bytes()[:44]


def test_streaming_header_has_unknown_sizes():
    assert len(STREAMING_WAV_HEADER) == 44
    riff_size, data_size = struct.unpack_from("<I", STREAMING_WAV_HEADER, 4)[0], \
        struct.unpack_from("<I", STREAMING_WAV_HEADER, 40)[0]
    assert riff_size == data_size == 0xFFFFFFFF
    assert STREAMING_WAV_HEADER[:4] == b"RIFF" and STREAMING_WAV_HEADER[36:40] == b"data"
    with pytest.raises(ValueError):
        wav_header(-1)


def test_wav_writer_fixes_sizes_on_close(tmp_path):
    path = tmp_path / "w.wav"
    with WavWriter(path) as w:
        w.write(PCM[:4])
        w.write(PCM[4:])
        assert path.read_bytes()[4:8] == b"\xff\xff\xff\xff"  # streaming header meanwhile
    w.close()  # idempotent
    assert read_wav(path) == ((1, 2, 24000), PCM)
    assert w.seconds == 4 / 24000
    write_wav(tmp_path / "x.wav", PCM)
    assert read_wav(tmp_path / "x.wav")[1] == PCM


def test_say_writes_a_correct_wav_and_reports_timing(fake_server, tmp_path, capsys):
    srv = fake_server(chunks=5, chunk_samples=2400)
    out = tmp_path / "hello.wav"
    rc = say.main(["Hello world.", "--url", srv.url, "--api-key", "k1", "--voice", "tara",
                   "-o", str(out), "--param", "temperature=0.4", "--timeout", "30"])
    assert rc == 0
    assert read_wav(out) == ((1, 2, 24000), srv.expected_pcm(5, 2400))
    text = capsys.readouterr().out
    assert "time to first audio:" in text and "real-time factor:" in text
    request = srv.stream_requests[0]
    assert request.headers["authorization"] == "Bearer k1"
    assert request.body == {"text": "Hello world.", "voice": "tara", "timeout_s": 30.0,
                            "temperature": 0.4}


def test_say_uses_environment_defaults(fake_server, tmp_path, monkeypatch):
    srv = fake_server()
    monkeypatch.setenv("ORPHEUS_URL", srv.url)
    monkeypatch.setenv("ORPHEUS_API_KEY", "from-env")
    out = tmp_path / "env.wav"
    assert cli_main(["say", "Hi.", "-o", str(out)]) == 0
    assert read_wav(out)[1] == srv.expected_pcm(3)
    assert srv.stream_requests[0].headers["authorization"] == "Bearer from-env"


def test_say_fails_cleanly_and_leaves_no_truncated_file(fake_server, tmp_path, capsys):
    srv = fake_server()
    srv.script(Behaviour.http_error(401, "invalid_api_key", message="Invalid API key."),
               Behaviour.eof(after=2))
    out = tmp_path / "bad.wav"
    assert say.main(["Hi.", "--url", srv.url, "-o", str(out)]) == 1
    assert "Invalid API key." in capsys.readouterr().err
    assert say.main(["Hi.", "--url", srv.url, "-o", str(out)]) == 1
    assert "terminal frame" in capsys.readouterr().err
    assert not out.exists()


def test_say_runs_as_the_installed_command(fake_server, tmp_path):
    srv = fake_server(chunks=2)
    out = tmp_path / "sub.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "orpheus_tts", "say", "Hi.", "--url", srv.url, "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_wav(out)[1] == srv.expected_pcm(2)


def test_say_uses_the_local_stack_key_only_for_the_local_stack(tmp_path, monkeypatch):
    from orpheus_tts.say import DEFAULT_URL, target
    from orpheus_tts.up import ensure_local_key, local_key_file

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("ORPHEUS_API_KEY", raising=False)
    key = ensure_local_key()
    assert local_key_file().is_relative_to(tmp_path)
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert target(None, None, env) == ([DEFAULT_URL], key)
    assert target(["http://tts.example.com"], None, env) == (["http://tts.example.com"], None)
    assert target(None, None, {**env, "ORPHEUS_URL": "http://other:1"}) == (["http://other:1"], None)
    assert target(None, "explicit", env) == ([DEFAULT_URL], "explicit")
    assert target(None, None, {**env, "ORPHEUS_API_KEY": "from-env"})[1] == "from-env"
