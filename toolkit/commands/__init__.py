"""One module per command of the `toolkit` command line (`toolkit.cli` runs `<module>.<function>`).

Each module reports the user's mistakes (missing files, bad options, output folders it must not
write into) before it imports torch.
"""
