"""Input and output around the tasks: image lists and boxes files, output files, pictures, fonts."""
