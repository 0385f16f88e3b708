"""Analysis of SE networks: the measured cost of SE (`cost`), the paper's ablation studies (`ablate`), SE's
successors as presets on equal terms with their papers' figures (`presets`), the excitation statistics of trained
networks (`excitation`) and self-contained HTML reports (`html_report`)."""
