"""The CPUs a group retrain's Ray task holds (``group_task_cpus``)."""

from retrain.cluster.groups import group_task_cpus


def test_a_first_model_may_take_a_whole_node_and_a_retrain_leaves_the_series_a_cpu() -> None:
    assert group_task_cpus(2, [2.0], series_wait=True) == 2  # its series wait anyway
    assert group_task_cpus(2, [2.0], series_wait=False) == 1  # beside the wave
    assert group_task_cpus(1, [1.0], series_wait=False) == 1  # at least one
    assert group_task_cpus(8, [4.0, 4.0], series_wait=False) == 4  # one node's at most
    assert group_task_cpus(3, [4.0, 4.0], series_wait=False) == 3  # as asked
    assert group_task_cpus(4, [2.0], series_wait=True) == 2  # never unschedulable
    assert group_task_cpus(4, [], series_wait=False) == 4  # the cluster unknown: as asked
