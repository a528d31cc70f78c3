"""tuneforge.train"""
