import pytest

from urllm.data.synthetic import make_synthetic

# the graph at its smallest (one epoch, no folds, full softmax): the pipeline tests' graph stage in seconds
GRAPH_TINY = [
    "graph.hidden=16", "graph.semantic_dim=4", "graph.max_len=6", "graph.batch_size=64", "graph.epochs=1",
    "graph.graph_folds=0", "graph.calibrate=false", "graph.selection=valid", "graph.negatives=0",
    "graph.hard_negatives=0", "graph.max_attr_frac=1.0", "graph.align_items=16", "graph.progress=false",
]  # fmt: skip


@pytest.fixture(scope="session")
def synthetic():
    """A seeded two-domain dataset with latent tastes (see urllm.data.synthetic)."""
    return make_synthetic()


def spawn_launcher(function, args=(), num_processes: int = 2) -> None:
    """``accelerate.debug_launcher`` with *spawned* CPU processes.

    debug_launcher forks; a fork of a pytest process whose torch/OpenMP thread pools already run can
    deadlock (seen here: both workers idle forever once earlier tests had used torch). Spawned workers
    start clean. ``function`` must be a module-level function and ``args`` picklable.
    """
    import socket
    import tempfile

    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import start_processes

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        tempfile.NamedTemporaryFile() as rdv,
        patch_environment(
            world_size=num_processes,
            master_addr="127.0.0.1",
            master_port=str(port),
            accelerate_mixed_precision="no",
            accelerate_debug_rdv_file=rdv.name,
            accelerate_use_cpu="yes",
            gloo_socket_ifname="lo",
        ),
    ):
        start_processes(
            PrepareForLaunch(function, debug=True), args=args, nprocs=num_processes, start_method="spawn"
        )


def write_tiny_config(tmp_path, data, extra: str = ""):
    """A YAML config reading ``data`` written as Art-Office-format files; ``extra`` is appended YAML."""
    from urllm.data.art_office import write_art_office

    files = write_art_office(data, tmp_path / "data")
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"run_dir: run\ndata:\n  name: tiny\n  root: data\n"
        f"  item_files: [{files['items_0']}, {files['items_1']}]\n"
        f"  train_file: {files['train']}\n  valid_file: {files['valid']}\n" + extra
    )
    return path
