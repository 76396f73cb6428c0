"""The attacks of issue 14 as tests: each must keep failing against the weakness it names."""
