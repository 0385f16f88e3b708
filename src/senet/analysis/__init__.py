"""Analysis of SE networks: the measured cost of SE (`cost`), the paper's ablation studies (`ablate`), the excitation
statistics of trained networks (`excitation`) and self-contained HTML reports (`html_report`)."""
