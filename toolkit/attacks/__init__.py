"""Adversarial attacks: the task objectives they climb, running them on data, reports, training.

An attack plugin is a callable `(model, images in [0, 1], targets) -> images in [0, 1]`
(`toolkit.contracts.Attack`); the built-ins (FGSM, PGD, the adversarial patch) live in
`toolkit_plugins.attacks`.
"""
