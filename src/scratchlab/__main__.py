from scratchlab.cli import main

# Guarded: process pools started with "spawn" (palindrome-sweep) re-import the main module in each worker.
if __name__ == "__main__":
    main()
