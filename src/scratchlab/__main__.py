from scratchlab.cli import main

main()
