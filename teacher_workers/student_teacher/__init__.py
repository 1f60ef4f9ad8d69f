"""A trained student as the teacher: a feed-forward network (a run's checkpoint, or the MicroAST
authors' released weights) stylizing a tile's pairs, e.g. to distil a trained STTR into MicroAST
or to stand in for the diffusion teacher where no SD 1.5 weights are."""
