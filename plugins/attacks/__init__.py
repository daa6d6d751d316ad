"""Built-in attacks: FGSM and PGD (gradient attacks), the adversarial patch.

Registration modules (`gradient`, `patch`) stay light; `*_attack(s)` modules hold the code.
"""
