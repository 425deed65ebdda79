#!/bin/sh
echo 'Login succeeded!'
