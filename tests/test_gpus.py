"""What a sweep says at its start about the GPU memory each trial can count on (hpo.sweep.gpus)."""

from __future__ import annotations

from hpo.sweep.gpus import GIB, Gpus, announce, memory_per_trial_line, parse_nvidia_smi

H200 = Gpus(count=1, name="NVIDIA H200", memory_bytes=143771 * 1024**2)


def test_memory_left_per_trial_is_the_gpu_memory_over_the_trials_sharing_it():
    assert memory_per_trial_line(H200, 0.25) == (
        "GPU: 1 x NVIDIA H200, 140.4 GiB each; resources.gpu 0.25: 4 trials per GPU, 35.1 GiB of GPU memory left per trial "
        "(total / trials per GPU; not enforced: a trial that runs out fails with 'out of GPU memory')"
    )
    assert "3 trials per GPU, 46.8 GiB of GPU memory left per trial" in memory_per_trial_line(H200, 0.3333)
    assert memory_per_trial_line(Gpus(8, "NVIDIA A100-SXM4-80GB", 80 * GIB), 2) == (
        "GPU: 8 x NVIDIA A100-SXM4-80GB, 80.0 GiB each; resources.gpu 2: one trial (or data-parallel worker) per GPU, 80.0 GiB of GPU memory each"
    )


def test_nvidia_smi_output_gives_the_count_and_the_smallest_gpu():
    out = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559\nNVIDIA A10G, 23028\n"
    assert parse_nvidia_smi(out) == Gpus(3, "NVIDIA A10G", 23028 * 1024**2)
    assert parse_nvidia_smi("") is None
    assert parse_nvidia_smi("No devices were found\n") is None


def test_the_line_is_said_only_for_a_sweep_on_gpus():
    said: list[str] = []
    announce(0.5, said.append, gpus=H200)
    announce(0.0, said.append, gpus=H200)  # a CPU sweep on a GPU machine: nothing to say
    assert said == [memory_per_trial_line(H200, 0.5)]
