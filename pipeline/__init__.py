"""learnsieve pipeline: Apache Beam stages read | decode | score | select | write."""
