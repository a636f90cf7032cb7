from crystal_studio.cli import main

main()
