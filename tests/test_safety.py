"""The checks that refuse values which would run a command, leak a credential or collide: each rule against the values it must refuse and accept."""

import asyncio
import gc
import io
import json

import pytest

from components import vllm as vllm_component
from components import vllm_cli
from config import credentials, docker_names, engine_ids, ssh_options
from config.cli import main
from config.errors import StackConfigError
from config.plan import run_program
from config.validation import validate
from tests.conftest import ROOT

VLLM = {"name": "qwen3", "model": "Qwen/Qwen3-30B-A3B-FP8"}
TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWx0123"


def issues_of(raw: dict) -> list[str]:
    try:
        validate(raw)
    except StackConfigError as error:
        return [str(i) for i in error.issues]
    return []


@pytest.mark.parametrize(
    "arg,flag",
    [
        ("--max_model_len", "--max-model-len"),
        ("--max_model_len=8", "--max-model-len"),
        ("--api_key=x", "--api-key"),
        ("--hf-overrides.rope_theta", "--hf-overrides"),
        ("--hf_overrides.rope_scaling.factor=4", "--hf-overrides"),
        ("--middleware+", "--middleware"),
        ("-tp", "--tensor-parallel-size"),
        ("-tp=2", "--tensor-parallel-size"),
        ("-O3", "--optimization-level"),
        ("-1", None),
        ("value", None),
    ],
)
def test_flags_are_read_as_vllm_reads_them(arg, flag):
    assert vllm_cli.flag_name(arg) == flag


def test_component_checks_see_every_spelling():
    assert vllm_component.managed_flags_in(["--max_model_len", "8", "-tp", "2", "--port=1"]) == ["--max_model_len", "-tp", "--port=1"]
    assert vllm_component.removed_flags_in(["--swap_space=4"]) == ["--swap_space=4"]


@pytest.mark.parametrize(
    "args",
    [["--max-num-seqs", "64"], ["--enable-prefix-caching"], ["--kv-cache-dtype", "fp8"], ["--max-num-batched-tokens", "8192"], ["--seed", "-1"]],
)
def test_ordinary_extra_args_pass(args):
    assert issues_of({"vllm": [{**VLLM, "extraArgs": args}]}) == []


@pytest.mark.parametrize(
    "model,ok",
    [
        ("Qwen/Qwen3-30B-A3B-FP8", True), ("gpt2", True), ("/models/qwen3", True), ("org/name.v1_2", True),
        ("--trust-remote-code", False), ("-x", False), ("org/na me", False), ("org//name", False), ("a/b/c", False),
        ("org/-name", False), ("org/name-", False), ("org/..", False), ("/models/../etc", False), ("https://hf.co/a/b", False),
        ("org/{a,b}", False), ("x" * 97, False),
    ],
)
def test_hugging_face_ids(model, ok):
    assert (engine_ids.hf_model_problem(model, local_path=True) is None) == ok


@pytest.mark.parametrize(
    "tag,ok",
    [
        ("qwen2.5vl:7b-q4_K_M", True), ("llama3", True), ("library/llama3:8b", True), ("registry.example.com:5000/team/m:v1", True),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", True),
        ("-rf", False), ("--insecure", False), ("a b", False), ("a;b", False), ("a:b:c", False), ("", False),
    ],
)
def test_ollama_tags(tag, ok):
    assert (engine_ids.ollama_tag_problem(tag) is None) == ok


@pytest.mark.parametrize(
    "image,ok",
    [
        ("vllm/vllm-openai:v0.31.0", True), ("ghcr.io/speaches-ai/speaches:0.8.3-cuda", True), ("localhost:5000/x", True),
        ("redis@sha256:" + "a" * 64, True), ("postgres:17", True),
        ("--privileged", False), ("Vllm/Vllm", False), ("a b", False), ("x:tag with space", False), ("x;rm -rf /", False),
    ],
)
def test_image_references(image, ok):
    assert (engine_ids.image_problem(image) is None) == ok


@pytest.mark.parametrize(
    "opts",
    [
        ["-o", "StrictHostKeyChecking=accept-new"],
        ["-o", "ProxyJump=deploy@bastion:2222", "-o", "ServerAliveInterval 30"],
        ["-oUserKnownHostsFile=/etc/llmstack/known_hosts", "-i", "/home/ci/.ssh/id_ed25519"],
        ["-p", "2222", "-l", "deploy", "-J", "jump.example.com", "-4", "-C"],
        ["-o", "ProxyJump=none", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"],
    ],
)
def test_connection_settings_pass(opts):
    assert list(ssh_options.option_problems(opts)) == []


@pytest.mark.parametrize(
    "opts,why",
    [
        (["-o", "ProxyCommand=nc %h %p"], "runs a local command"),
        (["-oproxycommand nc %h %p"], "runs a local command"),
        (["-o", "LocalCommand=id"], "runs a local command"),
        (["-o", "PermitLocalCommand=yes"], "enables LocalCommand"),
        (["-o", "KnownHostsCommand=/bin/id"], "runs a local command"),
        (["-o", "Match=exec id"], "Match exec"),
        (["-o", "Include=/tmp/x"], "reads another ssh config file"),
        (["-o", "PKCS11Provider=/tmp/lib.so"], "shared library"),
        (["-F", "/tmp/x"], "reads another ssh config file"),
        (["-L", "8080:localhost:80"], "port forwarding"),
        (["-o", "Port=-oProxyCommand=x"], "read as another option"),
        (["-J", "-oProxyCommand=x"], "read as another option"),
        (["-J", "user:secret@bastion"], "holds a password"),
        (["-p"], "needs a value"),
        (["--", "x"], "not an ssh option"),
    ],
)
def test_ssh_options_that_run_commands_are_refused(opts, why):
    problems = list(ssh_options.option_problems(opts))
    assert problems and why in problems[0], problems


@pytest.mark.parametrize(
    "name,bad",
    [("127.0.0.1", True), ("1", True), ("169.254.169.254", True), ("127.1", True), ("0x7f.1", True), ("::1", True), ("qwen3", False), ("qwen2.5-vl", False), ("1b", False)],
)
def test_address_like_names(name, bad):
    assert (docker_names.address_like(name) is not None) == bad


@pytest.mark.parametrize(
    "subnet,ok",
    [("192.168.0.0/24", True), ("10.20.0.0/16", True), ("172.18.0.0/16", True), ("10.9.0.0/30", True),
     ("172.17.0.0/16", False), ("172.16.0.0/12", False), ("10.9.0.0/31", False), ("10.9.0.1/32", False), ("0.0.0.0/0", False),
     ("127.0.0.0/8", False), ("169.254.0.0/16", False), ("224.0.0.0/4", False), ("fd00::/64", False)],
)
def test_subnets(subnet, ok):
    assert (issues_of({"vllm": [VLLM], "network": {"subnet": subnet}}) == []) == ok


@pytest.mark.parametrize("address,ok", [("gpu-01", True), ("gpu-01.example.com", True), ("10.0.0.5", True), ("gpu-01@evil.example/x?", False), ("a b", False), ("http://x", False)])
def test_host_address(address, ok):
    raw = {"vllm": [VLLM], "hosts": {"gpu-01": {"docker": "ssh://deploy@gpu-01", "address": address}}}
    assert (issues_of(raw) == []) == ok


@pytest.mark.parametrize(
    "gpus,tp,ok", [(["0", "1"], 2, True), (["0"], 2, False), (["0", "1", "2", "3"], 2, False), (["GPU-" + "0" * 8 + "-0000-0000-0000-" + "0" * 12], None, True)]
)
def test_tensor_parallel_and_gpu_ids(gpus, tp, ok):
    entry = {**VLLM, "gpus": gpus, **({"tensorParallelSize": tp} if tp else {})}
    assert (issues_of({"vllm": [entry]}) == []) == ok


def test_pipeline_parallel_counts_in_the_ranks():
    entry = {**VLLM, "gpus": ["0", "1", "2", "3"], "tensorParallelSize": 2, "extraArgs": ["--pipeline-parallel-size", "2"]}
    assert issues_of({"vllm": [entry]}) == []


@pytest.mark.parametrize(
    "text,kind",
    [
        (TOKEN, "a Hugging Face token"), ("sk-proj-AbCdEfGhIjKlMnOpQr", "an API key (sk-...)"), ("ghp_" + "a" * 36, "a GitHub token"),
        ("https://user:pw@example.com/x", "a password in a URL"), ("AKIAABCDEFGHIJKLMNOP", "an AWS access key"),
        ("qwen3", None), ("sk-1", None), ("ssh://deploy@gpu-01", None), ("hf_short", None),
    ],
)
def test_credential_shapes(text, kind):
    assert credentials.credential_kind(text) == kind


PLANTED = {
    "hfOverrides": {"vllm": [{**VLLM, "hfOverrides": {"hub_token": TOKEN}}]},
    "extraArgs": {"vllm": [{**VLLM, "extraArgs": ["--hf-token", TOKEN]}]},
    "ollama env": {"ollama": {"env": {"OLLAMA_KEEP_ALIVE": TOKEN}, "models": [{"name": "small", "model": "qwen3:8b"}]}},
    "model URL": {"infinity": {"models": [{"name": "nomic", "model": f"https://{TOKEN}@huggingface.co/nomic-ai/x", "mode": "embedding"}]}},
    "docker URL": {"vllm": [VLLM], "hosts": {"gpu-01": {"docker": f"ssh://deploy:{TOKEN}@gpu-01"}}},
    "sshOpts": {"vllm": [VLLM], "hosts": {"gpu-01": {"docker": "ssh://deploy@gpu-01", "sshOpts": ["-o", f"User={TOKEN}"]}}},
    "model name": {"vllm": [{**VLLM, "name": TOKEN}]},
}


@pytest.mark.parametrize("where", PLANTED)
def test_a_planted_credential_never_appears_in_render_output(where, tmp_path):
    config = {f"llmstack:{k}": v for k, v in PLANTED[where].items()}
    path = tmp_path / "Pulumi.planted.yaml"
    path.write_text(json.dumps({"config": config}))  # JSON is YAML
    for command in (["check", str(path)], ["render", str(path)], ["render", "--format", "yaml", str(path)]):
        out, err = io.StringIO(), io.StringIO()
        code = main(command, out=out, err=err)
        assert code == 2, (command, out.getvalue(), err.getvalue())
        assert TOKEN not in out.getvalue() + err.getvalue()
        assert "pulumi config set --secret" in err.getvalue() or "ssh://user@host" in err.getvalue(), err.getvalue()


def test_no_event_loop_is_left_open_by_a_render():
    """The mock monitor's executor threads each opened a loop; left open, one render in twenty printed a traceback at exit."""
    run_program({"vllm": [VLLM]})
    gc.collect()
    main_loop = asyncio.get_event_loop_policy().get_event_loop()
    open_loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed() and o is not main_loop]
    assert open_loops == []


def test_committed_stacks_pass_every_new_check():
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        code = main(["check", str(path)], out=io.StringIO(), err=io.StringIO())
        assert code == 0, path


@pytest.mark.parametrize(
    "overrides,refused",
    [({"bos_token": "<s>", "pad_token_id": 0}, False), ({"token": "abc"}, True), ({"hub_token": "abc"}, True), ({"text_config": {"api_key": "x"}}, True)],
)
def test_secret_names_in_hf_overrides(overrides, refused):
    assert bool(issues_of({"vllm": [{**VLLM, "hfOverrides": overrides}]})) == refused


# What the real OpenSSH client makes of sshOpts: `ssh -G` prints the resolved settings without connecting
# (and runs nothing for the options used here; Match exec would run, so it is left out).
COMMAND_SETTINGS = ("proxycommand", "localcommand", "knownhostscommand", "permitlocalcommand yes", "remotecommand")
ACCEPTED_OPTS = [
    ["-o", "StrictHostKeyChecking=accept-new"],
    ["-o", "ProxyJump=deploy@bastion:2222", "-o", "ServerAliveInterval 30"],
    ["-oUserKnownHostsFile=/etc/llmstack/known_hosts", "-i", "/home/ci/.ssh/id_ed25519"],
    ["-p", "2222", "-l", "deploy", "-J", "jump.example.com", "-4", "-C"],
    ["-o", "ProxyJump=none", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", "-o", "ControlMaster=auto"],
]
REFUSED_OPTS = [
    ["-o", "ProxyCommand=nc %h %p"],
    ["-oproxycommand nc %h %p"],
    ["-o", "PermitLocalCommand=yes", "-o", "LocalCommand=id"],
    ["-o", "KnownHostsCommand=/bin/id"],
    ["-o", "RemoteCommand=id"],
]


def resolved_ssh_settings(opts: list[str]) -> str:
    import shutil
    import subprocess

    if not shutil.which("ssh"):
        pytest.skip("no OpenSSH client (apt-get install openssh-client)")
    run = subprocess.run(["ssh", "-F", "/dev/null", "-G", *opts, "gpu-01"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout.lower()


@pytest.mark.parametrize("opts", ACCEPTED_OPTS)
def test_accepted_ssh_options_are_valid_for_openssh_and_run_nothing(opts):
    assert list(ssh_options.option_problems(opts)) == []
    settings = resolved_ssh_settings(opts)
    assert not [line for line in settings.splitlines() if line.startswith(COMMAND_SETTINGS)]


@pytest.mark.parametrize("opts", REFUSED_OPTS)
def test_refused_ssh_options_would_set_a_command_in_openssh(opts):
    assert list(ssh_options.option_problems(opts))
    settings = resolved_ssh_settings(opts)
    assert [line for line in settings.splitlines() if line.startswith(COMMAND_SETTINGS)]
