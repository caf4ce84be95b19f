import torch

from learnsieve.models.flops import flops_per_example


def test_linear_flops_are_2_m_n_k_per_row():
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(10, 64)
    assert flops_per_example(lambda: layer(x), 10) == 2 * 64 * 32


def test_conv_counts_and_scales_with_resolution():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    small = flops_per_example(lambda: conv(torch.randn(2, 3, 16, 16)), 2)
    large = flops_per_example(lambda: conv(torch.randn(2, 3, 32, 32)), 2)
    assert small == 2 * 3 * 8 * 9 * 16 * 16
    assert large == 4 * small
