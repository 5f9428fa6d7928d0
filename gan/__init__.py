"""StyleGAN2 and the GAN erasure methods."""
